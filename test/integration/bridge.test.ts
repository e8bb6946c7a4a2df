/**
 * The whole path with real peers: Claude Code's captured payloads posted to the bridge (built,
 * started as `npm start` starts it), a real redis-server between ingest and worker, and a real
 * LLMFlow that stores what the bridge sends. What LLMFlow holds is read back from its API.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { METRICS_QUEUE_NAME, QUEUE_NAME, queueKey } from '@ccbridge/redis';
import { countItems, decodeExportRequest, type ExportLogsRequest } from '@ccbridge/otlp';
import zlib from 'node:zlib';
import { Redis } from 'ioredis';
import { SCENARIOS, expectedSpans, logsOf, nativeTraceOf, payloads, type Capture } from '../support/fixtures';
import {
  post,
  startBridge,
  startLlmflow,
  startRedis,
  waitFor,
  type BridgePeer,
  type LlmflowPeer,
  type RedisPeer,
  type StoredSpan,
} from '../support/peers';
import { startRelay, type Relay } from '../support/relay';
import { keepForFile } from '../support/procs';

const CONTENT_TYPE = { json: 'application/json', protobuf: 'application/x-protobuf' } as const;
const CAPTURES: Capture[] = ['protobuf', 'json'];

let redis: RedisPeer;
let llmflow: LlmflowPeer;
let bridge: BridgePeer;
/** The bridge reaches Redis through it, so a Redis stopped and started again keeps its address. */
let redisRelay: Relay;

before(async () => {
  [redis, llmflow] = await Promise.all([startRedis(), startLlmflow()]);
  redisRelay = await startRelay(`127.0.0.1:${redis.port}`);
  bridge = await startBridge({
    REDIS_URL: `redis://127.0.0.1:${redisRelay.port}`,
    LLMFLOW_URL: llmflow.url,
    BRIDGE_INTERACTION_IDLE_MS: '400',
  });
});

after(async () => {
  await bridge?.stop();
  await redisRelay?.stop();
  await Promise.all([llmflow?.stop(), redis?.stop()]);
});

async function postCapture(capture: Capture, scenario: (typeof SCENARIOS)[number], gzip: boolean) {
  for (const p of payloads(capture, scenario)) {
    const body = gzip ? zlib.gzipSync(p.body) : p.body;
    const r = await post(
      `${bridge.url}/v1/${p.signal}`,
      body,
      CONTENT_TYPE[p.format],
      gzip ? { 'content-encoding': 'gzip' } : {},
    );
    assert.equal(r.status, 200, `${p.file}: ${r.body.toString()}`);
  }
}

const promptIdOf = (capture: Capture, scenario: (typeof SCENARIOS)[number]) => {
  const records = logsOf(capture, scenario).resourceLogs![0]!.scopeLogs![0]!.logRecords!;
  const prompt = records.find((r) => r.body?.stringValue === 'claude_code.user_prompt')!;
  return prompt.attributes!.find((a) => a.key === 'prompt.id')!.value!.stringValue!;
};

test('Claude Code sessions posted as protobuf and as JSON appear in LLMFlow as one trace per prompt', async () => {
  // Sent twice (the second time gzip-compressed), as a Collector retrying would: still one copy.
  for (const gzip of [false, true]) {
    for (const capture of CAPTURES) for (const scenario of SCENARIOS) await postCapture(capture, scenario, gzip);
  }
  const total = CAPTURES.flatMap((c) => SCENARIOS.map((s) => expectedSpans(c, s).total)).reduce((a, b) => a + b, 0);
  // Polled through LLMFlow's API (its own connection), then read once from its SQLite file.
  const listed = await waitFor(`LLMFlow to hold ${total} spans`, async () => {
    const s = await llmflow.listed();
    return s.length >= total && s.filter((x) => !x.parent_id).length === CAPTURES.length * SCENARIOS.length
      ? s
      : undefined;
  });
  const spans = await llmflow.spans();
  assert.equal(spans.length, total, 'every span exactly once');
  assert.equal(listed.length, total, 'LLMFlow lists them all');
  assert.equal(new Set(spans.map((s) => s.id)).size, spans.length);

  const byTrace = new Map<string, StoredSpan[]>();
  for (const s of spans) byTrace.set(s.trace_id, [...(byTrace.get(s.trace_id) ?? []), s]);
  assert.equal(byTrace.size, CAPTURES.length * SCENARIOS.length, 'one trace per prompt');

  for (const [traceId, trace] of byTrace) {
    const roots = trace.filter((s) => !s.parent_id);
    assert.equal(roots.length, 1, `trace ${traceId}: one root`);
    assert.equal(roots[0]!.span_name, 'claude_code.interaction');
    assert.equal(roots[0]!.span_type, 'agent');
    const ids = new Set(trace.map((s) => s.id));
    for (const s of trace)
      if (s.parent_id) assert.ok(ids.has(s.parent_id), `${s.span_name} ${s.id}: parent ${s.parent_id} is stored`);
    for (const s of trace.filter((x) => x.span_name === 'claude_code.llm_request')) {
      assert.equal(s.span_type, 'llm');
      assert.equal(s.model, 'claude-opus-5-5');
      assert.ok(s.prompt_tokens > 0 && s.completion_tokens > 0, 'token counts');
    }
    assert.ok(trace.filter((x) => x.span_name === 'claude_code.tool').every((s) => s.span_type === 'tool'));
  }

  // Per scenario, matched through each root's prompt.id: the right number of each span.
  for (const capture of CAPTURES) {
    for (const scenario of SCENARIOS) {
      const promptId = promptIdOf(capture, scenario);
      const root = spans.find(
        (s) => !s.parent_id && (JSON.parse(s.attributes) as Record<string, unknown>)['prompt.id'] === promptId,
      );
      assert.ok(root, `${capture}/${scenario}: its root`);
      const trace = byTrace.get(root.trace_id)!;
      const prompt = logsOf(capture, scenario)
        .resourceLogs![0]!.scopeLogs![0]!.logRecords!.find((r) => r.body?.stringValue === 'claude_code.user_prompt')!
        .attributes!.find((a) => a.key === 'prompt')!.value!.stringValue!;
      assert.equal(
        (JSON.parse(root.input ?? 'null') as { prompt: unknown }).prompt,
        prompt,
        'the prompt is the root input',
      );
      const want = expectedSpans(capture, scenario);
      assert.equal(
        trace.filter((s) => s.span_name === 'claude_code.llm_request').length,
        want.llm,
        `${capture}/${scenario} LLM spans`,
      );
      assert.equal(
        trace.filter((s) => s.span_name === 'claude_code.tool').length,
        want.tools,
        `${capture}/${scenario} tool spans`,
      );
      assert.equal(trace.length, want.total, `${capture}/${scenario} spans`);
    }
  }
});

test("Claude Code's metrics travel in their own queue and reach LLMFlow's /v1/metrics, each point once", async () => {
  // Every capture was posted twice (once gzip'd): Claude Code's metrics are deltas, and each
  // request is a new export to LLMFlow, which stores every point it is given.
  const points =
    CAPTURES.flatMap((c) => SCENARIOS.flatMap((s) => payloads(c, s).filter((p) => p.signal === 'metrics')))
      .map((p) => countItems('metrics', decodeExportRequest('metrics', p.body, p.format)))
      .reduce((a, b) => a + b, 0) * 2;
  assert.ok(points > 0);
  const stored = await waitFor(`LLMFlow to hold ${points} metric points`, async () => {
    const { total } = (await (await fetch(`${llmflow.url}/api/metrics?limit=1`)).json()) as { total: number };
    return total >= points ? total : undefined;
  });
  assert.equal(stored, points, 'each point once');
  const client = new Redis(redis.url);
  try {
    await waitFor('the queues to drain', async () => {
      const counts = await Promise.all(
        [QUEUE_NAME, METRICS_QUEUE_NAME].flatMap((q) => [
          client.llen(queueKey('wait', undefined, q)),
          client.llen(queueKey('active', undefined, q)),
          client.zcard(queueKey('delayed', undefined, q)),
        ]),
      );
      return counts.every((n) => n === 0);
    });
    for (const q of [QUEUE_NAME, METRICS_QUEUE_NAME])
      assert.equal(await client.zcard(queueKey('failed', undefined, q)), 0, `no failed jobs in ${q}`);
    assert.doesNotMatch(
      bridge.output(),
      /"signal":"metrics"[^\n]*"msg":"processed a batch"/,
      "metrics never pass through the events' worker",
    );
    assert.match(bridge.output(), /"signal":"metrics"[^\n]*"msg":"forwarded metrics"/);
  } finally {
    client.disconnect();
  }
});

test('with BRIDGE_FORWARD_METRICS=false, metrics are validated and acknowledged, never queued nor sent', async () => {
  const ownRedis = await startRedis();
  const off = await startBridge({ REDIS_URL: ownRedis.url, LLMFLOW_URL: llmflow.url, BRIDGE_FORWARD_METRICS: 'false' });
  const client = new Redis(ownRedis.url);
  try {
    const total = async () =>
      ((await (await fetch(`${llmflow.url}/api/metrics?limit=1`)).json()) as { total: number }).total;
    const before = await total();
    for (const p of payloads('protobuf', 'tool').filter((x) => x.signal === 'metrics')) {
      assert.equal((await post(`${off.url}/v1/metrics`, p.body, CONTENT_TYPE.protobuf)).status, 200);
    }
    assert.equal(
      (await post(`${off.url}/v1/metrics`, Buffer.from([0x0a, 0xff, 0xff]), CONTENT_TYPE.protobuf)).status,
      400,
      'still validated',
    );
    await waitFor('the acknowledgement', () =>
      /"signal":"metrics"[^\n]*"msg":"acknowledged a batch that nothing uses/.test(off.output()),
    );
    assert.equal(
      await client.exists(queueKey('id', undefined, METRICS_QUEUE_NAME)),
      0,
      'no metrics job was ever added',
    );
    assert.equal(await total(), before, 'LLMFlow got none');
  } finally {
    client.disconnect();
    await off.stop();
    await ownRedis.stop();
  }
});

test('while Redis is away the receiver answers 503 with Retry-After and /readyz fails; it recovers', async () => {
  const body = payloads('protobuf', 'simple').find((p) => p.signal === 'logs')!.body;
  await redis.stop();
  redisRelay.target = undefined;
  try {
    await waitFor('/readyz to fail', async () => (await fetch(`${bridge.url}/readyz`)).status === 503);
    const r = await post(`${bridge.url}/v1/logs`, body, CONTENT_TYPE.protobuf);
    assert.equal(r.status, 503);
    assert.ok(Number(r.headers.get('retry-after')) > 0);
    assert.equal((await fetch(`${bridge.url}/healthz`)).status, 200);
  } finally {
    // Started by the file, not this test: the tests after this one use it.
    redis = keepForFile(await startRedis(undefined, redis.dir));
    redisRelay.target = `127.0.0.1:${redis.port}`;
  }
  await waitFor('/readyz to pass again', async () => (await fetch(`${bridge.url}/readyz`)).status === 200);
  await waitFor(
    'the receiver to take batches again',
    async () => (await post(`${bridge.url}/v1/logs`, body, CONTENT_TYPE.protobuf)).status === 200,
  );
});

test("with Claude Code's own tracing on, its spans reach LLMFlow once, with tokens, and its events draw nothing more", async () => {
  for (const scenario of SCENARIOS) await postCapture('native', scenario, true);
  for (const scenario of SCENARIOS) {
    const native = nativeTraceOf(scenario).resourceSpans!.flatMap((rs) => rs.scopeSpans!.flatMap((ss) => ss.spans!));
    const traceId = native[0]!.traceId;
    const stored = await waitFor(`the native ${scenario} trace`, async () => {
      const s = (await llmflow.listed()).filter((x) => x.trace_id === traceId);
      return s.length >= native.length ? s : undefined;
    });
    assert.equal(stored.length, native.length, `${scenario}: exactly the native spans`);
    assert.deepEqual(new Set(stored.map((s) => s.id)), new Set(native.map((s) => s.spanId)));
  }
  const spans = await llmflow.spans();
  const nativeLlm = spans.filter(
    (s) =>
      s.span_name === 'claude_code.llm_request' &&
      (JSON.parse(s.attributes) as Record<string, unknown>)['span.type'] === 'llm_request',
  );
  assert.ok(nativeLlm.length > 0);
  assert.ok(nativeLlm.every((s) => s.prompt_tokens > 0 && s.completion_tokens > 0 && s.model === 'claude-opus-5-5'));
  // The native captures' events carry trace context, so no event-derived trace appeared for them.
  const nativePrompts = new Set<unknown>(SCENARIOS.map((sc) => promptIdOf('native', sc)));
  const nativeTraces = new Set(
    SCENARIOS.map((sc) => nativeTraceOf(sc).resourceSpans![0]!.scopeSpans![0]!.spans![0]!.traceId),
  );
  assert.equal(nativePrompts.size, SCENARIOS.length);
  const derived = spans.filter(
    (s) =>
      !nativeTraces.has(s.trace_id) &&
      nativePrompts.has((JSON.parse(s.attributes) as Record<string, unknown>)['prompt.id']),
  );
  assert.deepEqual(
    derived.map((s) => s.span_name),
    [],
    'no event-derived spans for natively traced interactions',
  );
});

test('a batch queued by an older bridge (the decoded request itself) still drains', async () => {
  const { Queue } = await import('bullmq');
  const { QUEUE_NAME, QUEUE_PREFIX } = await import('@ccbridge/queue');
  const client = new Redis(redis.url, { maxRetriesPerRequest: null });
  const queue = new Queue(QUEUE_NAME, { connection: client, prefix: QUEUE_PREFIX });
  try {
    const json = JSON.stringify(logsOf('json', 'simple')).replaceAll(
      promptIdOf('json', 'simple'),
      'prompt-from-an-older-bridge',
    );
    await queue.add('logs', { signal: 'logs', request: JSON.parse(json) as ExportLogsRequest, items: 11 });
    const root = await waitFor('its root in LLMFlow', async () =>
      (await llmflow.spans()).find((s) => !s.parent_id && s.attributes.includes('prompt-from-an-older-bridge')),
    );
    assert.equal(root.span_name, 'claude_code.interaction');
  } finally {
    await queue.close();
    client.disconnect();
  }
});
