/**
 * A subagent's totals fold onto its Agent call's tool span, foreground or background, however
 * the events are split into batches and in whatever order they arrive. A background call returns
 * at once and its turn is drawn long before the subagent ends: its span waits for them
 * (lua/subagents.lua meet: the call holds like a subagent), at most the turn timeout. Events as Claude Code 2.1.3xx logs a BG_SUBAGENT
 * run (docs/CLAUDE_CODE_EVENTS.md); a real Redis, the test's clock.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { LogRecord } from '@ccbridge/otlp';
import { DEFAULT_LIFECYCLE } from '@ccbridge/claude-events';
import { logsOf } from '../support/fixtures';
import { Harness, prng, requestOf, shuffle, type CollectedSpan } from '../support/assembly';
import { useHarnesses } from '../support/per-file';

const { harness } = useHarnesses();

const T0 = 1_790_000_000_000;
const CALL = 'toolu_bg_1';
const AGENT = 'a0123456789abcdef';

/** One event as Claude Code logs it: numbered `seq`, `seq` ms after T0, in `prompt`. */
function event(name: string, seq: number, prompt: string, fields: Record<string, string> = {}): LogRecord {
  const attributes: Record<string, string> = {
    'session.id': 'sess-bg',
    'event.name': name,
    'event.sequence': String(seq),
    'prompt.id': prompt,
    ...fields,
  };
  return {
    timeUnixNano: String(BigInt(T0 + seq * 10) * 1_000_000n),
    body: { stringValue: `claude_code.${name}` },
    attributes: Object.entries(attributes).map(([key, v]) => ({ key, value: { stringValue: v } })),
  };
}

const usage = { input_tokens: '10', output_tokens: '5', cache_read_tokens: '100', cache_creation_tokens: '0' };
const sub = { agent_id: AGENT, query_source: 'agent:builtin:general-purpose' };
const input = (background: boolean) =>
  JSON.stringify({ description: 'task', prompt: 'SUBTASK run echo', run_in_background: background });
const totals = (seq: number) =>
  event('subagent_completed', seq, 'p1', { ...sub, agent_type: 'general-purpose', total_tokens: '115' });
const decision = event('tool_decision', 1, 'p1', {
  decision: 'accept',
  tool_name: 'Agent',
  tool_use_id: CALL,
  request_id: 'r1',
  tool_parameters: '{"subagent_type":"general-purpose"}',
});
const agentResult = (seq: number, background: boolean) =>
  event('tool_result', seq, 'p1', {
    tool_name: 'Agent',
    tool_use_id: CALL,
    request_id: 'r1',
    success: 'true',
    // A foreground call runs as long as its subagent (from just after its decision); a background one returns at once.
    duration_ms: background ? '2' : String((seq - 1) * 10 - 1),
    tool_input: input(background),
  });

/** A foreground agent: its totals, then at once its call's result; one turn. */
function foreground(): LogRecord[] {
  return [
    event('user_prompt', 0, 'p1', { prompt: 'Please SUBAGENT' }),
    decision,
    event('api_request', 2, 'p1', { ...usage, request_id: 'r1', query_source: 'sdk', duration_ms: '5' }),
    event('api_request', 3, 'p1', { ...usage, ...sub, request_id: 'r3', duration_ms: '5' }),
    event('assistant_response', 4, 'p1', { ...sub, request_id: 'r3', response: 'Sub done.' }),
    totals(5),
    agentResult(6, false),
    event('api_request', 7, 'p1', { ...usage, request_id: 'r2', query_source: 'sdk', duration_ms: '5' }),
    event('assistant_response', 8, 'p1', { request_id: 'r2', response: 'Main done.', query_source: 'sdk' }),
  ];
}

/** A turn that starts a background agent and ends before it does; the agent; the notification turn. */
function run({ completed = true } = {}): LogRecord[] {
  return [
    event('user_prompt', 0, 'p1', { prompt: 'Please BG_SUBAGENT' }),
    decision,
    event('api_request', 2, 'p1', { ...usage, request_id: 'r1', query_source: 'sdk', duration_ms: '5' }),
    agentResult(3, true),
    event('api_request', 4, 'p1', { ...usage, request_id: 'r2', query_source: 'sdk', duration_ms: '5' }),
    event('assistant_response', 5, 'p1', { request_id: 'r2', response: 'Main done.', query_source: 'sdk' }),
    event('api_request', 6, 'p1', { ...usage, ...sub, request_id: 'r3', duration_ms: '5' }),
    event('assistant_response', 7, 'p1', { ...sub, request_id: 'r3', response: 'Sub done.' }),
    ...(completed ? [totals(8)] : []),
    event('user_prompt', 9, 'p2', {
      prompt: `<task-notification>\n<task-id>${AGENT}</task-id>\n<tool-use-id>${CALL}</tool-use-id>\n</task-notification>`,
    }),
    event('api_request', 10, 'p2', { ...usage, request_id: 'r4', query_source: 'sdk', duration_ms: '5' }),
    event('assistant_response', 11, 'p2', { request_id: 'r4', response: 'Noted.', query_source: 'sdk' }),
  ];
}

const template = logsOf('json', 'simple');
const callSpans = (h: Harness): CollectedSpan[] =>
  [...h.stored().values()].filter((s) => s.name === 'claude_code.tool' && s.attrs['tool_use_id'] === CALL);

for (const [label, records, turns] of [
  ['background', run(), 2],
  ['foreground', foreground(), 1],
] as const)
  test(`a ${label} agent's totals are on its Agent call's tool span, in every batch order, and no row of their own`, async () => {
    const deliveries: LogRecord[][][] = [[records], records.map((r) => [r]), records.map((r) => [r]).reverse()];
    for (let k = 1; k < records.length; k++)
      deliveries.push([records.slice(0, k), records.slice(k)], [records.slice(k), records.slice(0, k)]);
    for (let seed = 1; seed <= 20; seed++) deliveries.push(shuffle(records, prng(seed)).map((r) => [r]));
    for (const batches of deliveries) {
      const h = harness();
      for (const b of batches) await h.process(requestOf(template, b));
      const where = batches.map((b) => b.map((r) => r.body?.stringValue?.slice(12)).join(',')).join(' / ');
      assert.equal(h.roots().length, turns, `${where}: its turns drawn`);
      const [call, ...more] = callSpans(h);
      assert.ok(call, `${where}: the Agent call's span is sent`);
      assert.equal(more.length, 0, where);
      assert.equal(call.attrs['claude_code.subagent_completed.total_tokens'], '115', `${where}: its totals`);
      assert.equal(call.attrs['claude_code.subagent_completed.agent_type'], 'general-purpose', where);
      assert.deepEqual(
        [...h.stored().values()].filter((s) => s.name === 'claude_code.subagent_completed').map((s) => s.name),
        [],
        `${where}: no row of their own`,
      );
      // Sent once: every copy of the call's span that went out is the one with the totals.
      assert.ok(
        h.exported
          .filter((s) => s.spanId === call.spanId)
          .every((s) => s.attrs['claude_code.subagent_completed.total_tokens']),
        where,
      );
    }
  });

test('a background call whose totals never come is sent as it is once the turn timeout has run out', async () => {
  const h = harness();
  await h.process(requestOf(template, run({ completed: false })));
  assert.equal(h.roots().length, 2, 'both turns drawn');
  assert.equal(callSpans(h).length, 0, 'the call waits for its totals');
  await h.advance(DEFAULT_LIFECYCLE.turnTimeoutMs - 1_000);
  assert.equal(callSpans(h).length, 0, 'still waiting short of the turn timeout');
  await h.advance(2_000);
  const [call] = callSpans(h);
  assert.ok(call, 'sent when the wait ran out');
  assert.equal(call.attrs['claude_code.subagent_completed.total_tokens'], undefined);
  // The totals, late after all, are a row of their own: nothing is dropped.
  await h.process(
    requestOf(template, [
      event('subagent_completed', 8, 'p1', { ...sub, agent_type: 'general-purpose', total_tokens: '115' }),
    ]),
  );
  const own = [...h.stored().values()].filter((s) => s.name === 'claude_code.subagent_completed');
  assert.equal(own.length, 1, 'late totals drawn as their own row');
  assert.equal(callSpans(h).length, 1);
});

test('a foreground call whose subagent logged no totals (it failed) goes at once, once the event before its result has come', async () => {
  const records = foreground()
    .filter((r) => r.body?.stringValue !== 'claude_code.subagent_completed')
    .map((r, i) => ({
      ...r,
      attributes: r.attributes!.map((a) =>
        a.key === 'event.sequence' ? { key: a.key, value: { stringValue: String(i) } } : a,
      ),
    }));
  const h = harness();
  const before = records.findIndex((r) => r.body?.stringValue === 'claude_code.tool_result');
  await h.process(requestOf(template, records.slice(before)));
  assert.equal(callSpans(h).length, 0, 'its totals may be the event before it, not come yet');
  await h.process(requestOf(template, records.slice(0, before)));
  assert.equal(callSpans(h).length, 1, 'sent once the event before its result came');
  await h.advance(DEFAULT_LIFECYCLE.turnTimeoutMs + 1_000);
  assert.equal(callSpans(h).length, 1, 'sent once');
  const h2 = harness();
  await h2.process(requestOf(template, records));
  assert.equal(callSpans(h2).length, 1, 'in one batch: at once');
});
