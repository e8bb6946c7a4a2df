/**
 * What batch.lua hands back travels once: a held span's body that the same call brought (a turn
 * whose root the batch completes, a subagent placed in the batch that told of it) is named by its
 * index in the call's input, not sent back (shard.lua L.reply, store.ts bodiesIn), and the worker
 * puts the body it sent in its place.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { logsOf } from '../support/fixtures';
import { useHarnesses } from '../support/per-file';

const { harness } = useHarnesses();

type Call = (...args: (string | Buffer)[]) => Promise<string[]>;

/** The numbers a summary names bodies by (shard.lua L.reply's places). */
function bodyRefs(summary: string): number[] {
  const out = JSON.parse(summary) as {
    release?: [string, number][];
    placed?: { spans: number[] }[];
    claimed?: { events: unknown[]; state: Record<string, unknown> }[];
  };
  const refs: unknown[] = [];
  for (const r of Array.isArray(out.release) ? out.release : []) refs.push(r[1]);
  for (const p of Array.isArray(out.placed) ? out.placed : []) refs.push(...(Array.isArray(p.spans) ? p.spans : []));
  for (const c of Array.isArray(out.claimed) ? out.claimed : []) {
    refs.push(c.state.prompt, c.state.completion);
    const events = Array.isArray(c.events) ? c.events : [];
    for (let i = 1; i < events.length; i += 2) refs.push(events[i]);
  }
  return refs.filter((r): r is number => typeof r === 'number');
}

test('a body handed back by the call that brought it is named by its input index, and the worker sends that body', async () => {
  const h = harness();
  const client = (h as unknown as { redis: Record<string, Call> }).redis;
  const original = client.ccbridgeBatch!.bind(client);
  const calls: { sent: string[]; reply: string[] }[] = [];
  client.ccbridgeBatch = async (...args) => {
    const reply = await original(...args);
    // Five keys, the input, then the bodies (ARGV[2..]).
    calls.push({ sent: args.slice(6).map(String), reply: reply.map(String) });
    return reply;
  };

  // The `tool` capture in one batch: its turn ends in it, so its root is claimed in the same call.
  await h.process(logsOf('json', 'tool'), 'job-1');

  const named = calls.flatMap((c) =>
    bodyRefs(c.reply[0]!)
      .filter((i) => i < 0)
      .map((i) => c.sent[-i - 1]!),
  );
  assert.ok(named.length > 0, 'the root claimed in the batch names held spans the call brought');
  for (const c of calls)
    for (const body of c.reply.slice(1))
      assert.ok(!c.sent.includes(body), 'no body goes back to the call that brought it');
  // Held spans that are rows of their own (a fold goes into another span; a turn's prompt, its
  // attributes, into the root) are sent under their own ids.
  const rows = named
    .map((b) => JSON.parse(b) as { spanId?: string; fold?: unknown })
    .filter((h) => h.spanId !== undefined && h.fold === undefined)
    .map((h) => h.spanId!);
  assert.ok(rows.length > 0, 'held rows among the bodies named');
  const exportedIds = new Set(h.exported.map((s) => s.spanId));
  for (const id of rows) assert.ok(exportedIds.has(id), `the span a reference names (${id}) was sent`);
});
