/**
 * Interaction assembly over a real Redis, under event streams as they really arrive: split
 * into many batches, out of order, repeated, taken by two workers at once, late after the root
 * closed, many sessions in one batch, a resumed session, and events without prompt.id.
 * Property tests: any such delivery of a capture gives the tree of the capture taken whole.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { StatusCode, type LogRecord } from '@ccbridge/otlp';
import { SCENARIOS, logsOf, type Capture } from '../support/fixtures';
import { Harness, prng, recordsOf, requestOf, treeOf } from '../support/assembly';
import { startRedis, waitFor, type RedisPeer } from '../support/peers';
import { InteractionCloser } from '@ccbridge/claude-events';

let redis: RedisPeer;
const harnesses: Harness[] = [];
const harness = (options?: ConstructorParameters<typeof Harness>[1]) => {
  const h = new Harness(redis.url, options);
  harnesses.push(h);
  return h;
};

before(async () => {
  redis = await startRedis();
});
after(async () => {
  for (const h of harnesses) h.disconnect();
  await redis?.stop();
});

async function wholeTree(capture: Capture, scenario: (typeof SCENARIOS)[number]) {
  const h = harness();
  await h.process(logsOf(capture, scenario));
  await h.closeAll();
  return treeOf(h.stored().values());
}

/** Splits records into 1..n batches at random points, shuffles them, and repeats some. */
function deliveries(records: LogRecord[], random: () => number): LogRecord[][] {
  const shuffled = [...records].sort(() => random() - 0.5);
  const batches: LogRecord[][] = [];
  for (let i = 0; i < shuffled.length; ) {
    const size = 1 + Math.floor(random() * 4);
    batches.push(shuffled.slice(i, i + size));
    i += size;
  }
  const repeats = batches.filter(() => random() < 0.3);
  return [...batches, ...repeats].sort(() => random() - 0.5);
}

for (const scenario of SCENARIOS) {
  for (const capture of ['json', 'protobuf'] as Capture[]) {
    test(`${capture}/${scenario}: split, reordered and repeated batches, two workers at once, give the same tree`, async () => {
      const whole = await wholeTree(capture, scenario);
      const request = logsOf(capture, scenario);
      for (let seed = 1; seed <= 12; seed++) {
        const random = prng(seed * 7919 + scenario.length);
        const h = harness();
        const other = h.sibling();
        const batches = deliveries(recordsOf(request), random);
        // Two workers take alternate batches concurrently.
        await Promise.all([
          (async () => { for (const b of batches.filter((_, i) => i % 2 === 0)) await h.process(requestOf(request, b)); })(),
          (async () => { for (const b of batches.filter((_, i) => i % 2 === 1)) await other.process(requestOf(request, b)); })(),
        ]);
        await Promise.all([h.closeAll(), other.closeAll()]);
        assert.deepEqual(treeOf(h.stored().values()), whole, `seed ${seed}`);
        const roots = h.exported.filter((s) => !s.parentSpanId);
        assert.equal(roots.length, 1, `seed ${seed}: the root is drawn exactly once`);
      }
    });
  }
}

test('events that arrive after the root closed join the same trace and never draw a second root', async () => {
  const request = logsOf('json', 'two-tools');
  const records = recordsOf(request);
  const late = records.filter((r) => r.body?.stringValue === 'claude_code.tool_result');
  const h = harness();
  await h.process(requestOf(request, records.filter((r) => !late.includes(r))));
  await h.closeAll();
  await h.process(requestOf(request, late));
  await h.closeAll();
  const spans = [...h.stored().values()];
  assert.equal(spans.filter((s) => !s.parentSpanId).length, 1);
  assert.equal(new Set(spans.map((s) => s.traceId)).size, 1);
  const ids = new Set(spans.map((s) => s.spanId));
  assert.ok(spans.every((s) => !s.parentSpanId || ids.has(s.parentSpanId)), 'no orphans');
  assert.equal(spans.filter((s) => s.name === 'claude_code.tool').length, late.length);
});

/** A copy of a capture as another prompt: new ids, later times, `event.sequence` from `seqFrom`. */
function anotherPrompt(records: LogRecord[], tag: string, shiftMs: number, seqFrom: number, withPromptId = true): LogRecord[] {
  const shift = (t?: string) => (t ? String(BigInt(t) + BigInt(shiftMs) * 1_000_000n) : t);
  return records.map((r, i) => ({
    ...r,
    timeUnixNano: shift(r.timeUnixNano),
    observedTimeUnixNano: shift(r.observedTimeUnixNano),
    attributes: r.attributes!.flatMap((a) => {
      if (a.key === 'prompt.id') return withPromptId ? [{ key: a.key, value: { stringValue: `${a.value!.stringValue}-${tag}` } }] : [];
      if (a.key === 'event.sequence') return [{ key: a.key, value: { intValue: String(seqFrom + i) } }];
      if (['request_id', 'tool_use_id', 'message.uuid'].includes(a.key)) return [{ key: a.key, value: { stringValue: `${a.value!.stringValue}-${tag}` } }];
      return [a];
    }),
  }));
}

test('a resumed session (same session.id, event.sequence from 0 again) is a second interaction; its start closes the first', async () => {
  const request = logsOf('json', 'tool');
  const first = recordsOf(request);
  const resumed = anotherPrompt(first, 'resumed', 60_000, 0);
  const h = harness();
  await h.process(requestOf(request, first));
  await h.process(requestOf(request, resumed));
  assert.equal(await h.closer.closeDue(false), 1, 'the first interaction closed when the next prompt started');
  await h.closeAll();
  const spans = [...h.stored().values()];
  const roots = spans.filter((s) => !s.parentSpanId);
  assert.equal(roots.length, 2);
  assert.equal(new Set(roots.map((r) => r.traceId)).size, 2);
  assert.equal(new Set(roots.map((r) => r.attrs['session.id'])).size, 1);
  for (const root of roots) {
    const children = spans.filter((s) => s.traceId === root.traceId && s.parentSpanId);
    assert.equal(children.filter((s) => s.name === 'claude_code.llm_request').length, 2);
  }
});

test('events without prompt.id (older Claude Code) are grouped by session and time', async () => {
  const request = logsOf('json', 'tool');
  const one = anotherPrompt(recordsOf(request), 'a', 0, 0, false);
  const two = anotherPrompt(recordsOf(request), 'b', 60_000, one.length, false);
  const h = harness();
  // Shuffled together, in one batch and then again in another order as single records.
  await h.process(requestOf(request, [...two, ...one]));
  for (const r of [...one, ...two].reverse()) await h.process(requestOf(request, [r]));
  await h.closeAll();
  const spans = [...h.stored().values()];
  const roots = spans.filter((s) => !s.parentSpanId);
  assert.equal(roots.length, 2, 'one root per prompt');
  for (const root of roots) {
    const children = spans.filter((s) => s.traceId === root.traceId && s.parentSpanId);
    assert.equal(children.filter((s) => s.name === 'claude_code.llm_request').length, 2);
    assert.equal(children.filter((s) => s.name === 'claude_code.tool').length, 1);
    assert.ok(children.every((c) => BigInt(c.endTimeUnixNano) <= BigInt(root.endTimeUnixNano)));
  }
});

test('many sessions interleaved in one batch give each its own trees', async () => {
  const requests = SCENARIOS.map((s) => logsOf('json', s));
  const mixed = requests.flatMap(recordsOf).sort(() => prng(42)() - 0.5);
  const h = harness();
  await h.process(requestOf(requests[0]!, mixed));
  await h.closeAll();
  const together = treeOf(h.stored().values());
  const apart: Record<string, unknown> = {};
  for (const s of SCENARIOS) Object.assign(apart, await wholeTree('json', s));
  assert.deepEqual(together, apart);
});

test('session-level events that come before any prompt are held, then land on the first prompt', async () => {
  const request = logsOf('protobuf', 'simple');
  const records = recordsOf(request);
  const startup = records.filter((r) => !r.attributes!.some((a) => a.key === 'prompt.id'));
  assert.ok(startup.length > 0);
  const h = harness();
  await h.process(requestOf(request, startup));
  assert.equal(h.exported.length, 0);
  await h.process(requestOf(request, records.filter((r) => !startup.includes(r))));
  await h.closeAll();
  const root = [...h.stored().values()].find((s) => !s.parentSpanId)!;
  assert.deepEqual(treeOf([root]), Object.fromEntries(Object.entries(await wholeTree('protobuf', 'simple')).filter(([id]) => id === root.spanId)));
});

test('an API error is an LLM span with error status, status code and attempt', async () => {
  const request = logsOf('json', 'simple');
  const api = recordsOf(request).find((r) => r.body?.stringValue === 'claude_code.api_request')!;
  const error: LogRecord = {
    ...api,
    body: { stringValue: 'claude_code.api_error' },
    attributes: [
      ...api.attributes!.filter((a) => ['session.id', 'prompt.id', 'user.id', 'model'].includes(a.key)),
      { key: 'event.name', value: { stringValue: 'api_error' } },
      { key: 'event.sequence', value: { intValue: '99' } },
      { key: 'error', value: { stringValue: 'Overloaded' } },
      { key: 'status_code', value: { stringValue: '529' } },
      { key: 'attempt', value: { intValue: '1' } },
      { key: 'duration_ms', value: { intValue: '12' } },
    ],
  };
  const h = harness();
  await h.process(requestOf(request, [...recordsOf(request), error]));
  await h.closeAll();
  const spans = [...h.stored().values()];
  const failed = spans.find((s) => s.status?.code === StatusCode.ERROR)!;
  assert.equal(failed.name, 'claude_code.llm_request');
  assert.equal(failed.status?.message, 'Overloaded');
  assert.equal(failed.attrs['http.response.status_code'], 529);
  assert.equal(failed.attrs['attempt'], 1);
  const root = spans.find((s) => !s.parentSpanId)!;
  assert.equal(root.attrs['claude_code.interaction.errors'], 1);
  assert.equal(root.attrs['claude_code.interaction.llm_requests'], 2);
});

test('an interaction is not closed while batches received before it went quiet still wait in the queue', async () => {
  const h = harness({ idleMs: 1 });
  await h.process(logsOf('json', 'simple'));
  let backlogSince: number | undefined = Date.now() - 60_000;
  const closer = new InteractionCloser(h.deps, { backlogSinceMs: async () => backlogSince });
  await waitFor('the interaction to be due', async () => {
    const due = await h.dueTimes();
    return due.length === 1 && due[0]! < Date.now();
  });
  assert.equal(await closer.closeDue(), 0, 'a batch from before it went quiet is still queued');
  backlogSince = undefined;
  assert.equal(await closer.closeDue(), 1);
});
