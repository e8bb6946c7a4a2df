/**
 * Claude Code's metrics on their way to LLMFlow (packages/metrics), against a real Redis and a
 * real LLMFlow 0.4.1: cumulative counters become deltas per series and per process, shared by
 * workers and kept across their restarts (the state is in Redis); a job tried again posts no
 * point twice; counts reach LLMFlow as integers it sums; an LLMFlow without the endpoint is
 * told, once.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { LlmflowMetricsClient } from '@ccbridge/llmflow';
import { createLogger, silentLogger, type Logger } from '@ccbridge/log';
import {
  MetricsStore,
  Temporality,
  chunkRequest,
  convertRequest,
  cumulativePoints,
  forwardMetrics,
  type MetricsSink,
} from '@ccbridge/metrics';
import type { ExportMetricsRequest } from '@ccbridge/otlp';
import { KEEP_ALL, createRedactor } from '@ccbridge/claude-events';
import { startLlmflowGate } from '../support/llmflow-gate';
import { startLlmflow, startRedis, type LlmflowPeer, type RedisPeer } from '../support/peers';

let redis: RedisPeer;
let llmflow: LlmflowPeer;
let client: Redis;

before(async () => {
  [redis, llmflow] = await Promise.all([startRedis(), startLlmflow()]);
  client = new Redis(redis.url, { maxRetriesPerRequest: null });
});
after(async () => {
  client?.disconnect();
  await Promise.all([llmflow?.stop(), redis?.stop()]);
});

const str = (key: string, v: string) => ({ key, value: { stringValue: v } });
const START = '1795479137000000000';
/** A Claude Code-like token counter: one point per (type, model) at `time`, values as doubles. */
function tokens(opts: {
  temporality: number;
  time: string;
  start?: string;
  session?: string;
  values: Record<string, number>;
}): ExportMetricsRequest {
  return {
    resourceMetrics: [
      {
        resource: { attributes: [str('service.name', 'claude-code')] },
        scopeMetrics: [
          {
            scope: { name: 'com.anthropic.claude_code', version: '2.1.328' },
            metrics: [
              {
                name: 'claude_code.token.usage',
                unit: 'tokens',
                sum: {
                  aggregationTemporality: opts.temporality,
                  isMonotonic: true,
                  dataPoints: Object.entries(opts.values).map(([type, v]) => ({
                    attributes: [str('session.id', opts.session ?? 's1'), str('model', 'claude-x'), str('type', type)],
                    startTimeUnixNano: opts.start ?? START,
                    timeUnixNano: opts.time,
                    asDouble: v,
                  })),
                },
              },
              {
                name: 'claude_code.cost.usage',
                unit: 'USD',
                sum: {
                  aggregationTemporality: opts.temporality,
                  isMonotonic: true,
                  dataPoints: [
                    {
                      attributes: [str('session.id', opts.session ?? 's1'), str('model', 'claude-x')],
                      startTimeUnixNano: opts.start ?? START,
                      timeUnixNano: opts.time,
                      asDouble: 0.5,
                    },
                  ],
                },
              },
            ],
          },
        ],
      },
    ],
  };
}
const t = (s: number) => `${BigInt(START) + BigInt(s) * 1_000_000_000n}`;

/** The token points of a converted request: type → [value, start]. */
function tokenPoints(request: ExportMetricsRequest) {
  const m = (
    request.resourceMetrics![0]!.scopeMetrics![0]!.metrics as {
      name: string;
      sum: {
        dataPoints: {
          attributes: { key: string; value: { stringValue: string } }[];
          asInt?: string;
          asDouble?: number;
          startTimeUnixNano: string;
        }[];
        aggregationTemporality: number;
      };
    }[]
  )[0]!;
  return Object.fromEntries(
    m.sum.dataPoints.map((p) => [
      p.attributes.find((a) => a.key === 'type')!.value.stringValue,
      [p.asInt ?? p.asDouble, p.startTimeUnixNano],
    ]),
  );
}

let jobs = 0;
/** Converts a request as a worker would, as job `id` (a fresh one by default). */
async function convert(store: MetricsStore, request: ExportMetricsRequest, id = `job-${++jobs}`) {
  const record = await store.record(id, cumulativePoints(request));
  return convertRequest(request, record.prev);
}

test('cumulative counters become deltas per series, across workers and restarts, and a job tried again gets the same deltas', async () => {
  const first = new MetricsStore(client);
  const a = await convert(
    first,
    tokens({ temporality: Temporality.CUMULATIVE, time: t(1), values: { input: 100, output: 10 } }),
    'job-a',
  );
  assert.deepEqual(
    tokenPoints(a.request),
    { input: ['100', START], output: ['10', START] },
    'a first point counts whole, as an integer',
  );
  // Another worker, on its own connection (or this one restarted): the state is in Redis.
  const other = new Redis(redis.url, { maxRetriesPerRequest: null });
  try {
    const second = new MetricsStore(other);
    const b = await convert(
      second,
      tokens({ temporality: Temporality.CUMULATIVE, time: t(2), values: { input: 250, output: 10 } }),
      'job-b',
    );
    assert.deepEqual(tokenPoints(b.request), { input: ['150', t(1)], output: ['0', t(1)] });
    const again = await convert(
      first,
      tokens({ temporality: Temporality.CUMULATIVE, time: t(2), values: { input: 250, output: 10 } }),
      'job-b',
    );
    assert.deepEqual(tokenPoints(again.request), tokenPoints(b.request), 'job-b tried again: the same deltas');
    const cost = (
      again.request.resourceMetrics![0]!.scopeMetrics![0]!.metrics![1] as {
        sum: { dataPoints: { asDouble?: number; asInt?: string }[]; aggregationTemporality: number };
      }
    ).sum;
    assert.equal(cost.aggregationTemporality, Temporality.DELTA);
    assert.deepEqual(
      cost.dataPoints.map((p) => [p.asDouble, p.asInt]),
      [[0, undefined]],
      'a cost stays a double',
    );
  } finally {
    other.disconnect();
  }
  const stale = await convert(
    first,
    tokens({ temporality: Temporality.CUMULATIVE, time: t(1), values: { input: 100, output: 10 } }),
  );
  assert.equal(stale.stale, 3, 'a point not later than the last one is already counted');
  assert.equal(stale.points, 0);
  const reset = await convert(
    first,
    tokens({ temporality: Temporality.CUMULATIVE, time: t(3), values: { input: 40, output: 12 } }),
  );
  assert.deepEqual(
    tokenPoints(reset.request),
    { input: ['40', START], output: ['2', t(2)] },
    'a counter that went down was reset: it counts whole',
  );
  // Another process of the same session: its own series (its own start time), not a reset of this one.
  const next = await convert(
    first,
    tokens({ temporality: Temporality.CUMULATIVE, time: t(4), start: t(3), values: { input: 7, output: 1 } }),
  );
  assert.deepEqual(tokenPoints(next.request), { input: ['7', t(3)], output: ['1', t(3)] });
  const after = await convert(
    first,
    tokens({ temporality: Temporality.CUMULATIVE, time: t(5), values: { input: 41, output: 12 } }),
  );
  assert.deepEqual(
    tokenPoints(after.request),
    { input: ['1', t(3)], output: ['0', t(3)] },
    'the first process goes on where it was',
  );
});

test('delta points pass as they came, whole counts as integers; requests are split by points, the same way every time', () => {
  const request = tokens({ temporality: Temporality.DELTA, time: t(1), values: { input: 3, output: 4, cacheRead: 5 } });
  const converted = convertRequest(request, []);
  assert.deepEqual(tokenPoints(converted.request), {
    input: ['3', START],
    output: ['4', START],
    cacheRead: ['5', START],
  });
  assert.equal(converted.points, 4);
  const chunks = chunkRequest(converted.request, 3);
  assert.deepEqual(
    chunks.map((c) => c.points),
    [3, 1],
  );
  assert.deepEqual(chunkRequest(converted.request, 3), chunks);
});

test('the privacy switches hold for metrics: who is hashed or dropped, on points and resources alike', () => {
  const request = tokens({ temporality: Temporality.DELTA, time: t(1), values: { input: 3 } });
  const withUser = structuredClone(request);
  withUser.resourceMetrics![0]!.resource!.attributes!.push(str('user.email', 'a@example.com'));
  for (const m of withUser.resourceMetrics![0]!.scopeMetrics![0]!.metrics as {
    sum: { dataPoints: { attributes: unknown[] }[] };
  }[]) {
    for (const p of m.sum.dataPoints) p.attributes.push(str('user.id', 'u-1'));
  }
  const redactor = createRedactor({ ...KEEP_ALL, userIds: 'drop' });
  const out = convertRequest(withUser, [], (a) => redactor.keyValues(a)).request;
  const keys = JSON.stringify(out);
  assert.doesNotMatch(keys, /user\.id|user\.email|a@example\.com|u-1/);
  assert.deepEqual(out, convertRequest(request, []).request, 'all else as it was');
});

/** A sink that records what it was given, and fails the nth post (1-based) once, as an LLMFlow outage would. */
function recordingSink(failAt?: number): MetricsSink & { posted: number[] } {
  let calls = 0;
  const sink = {
    posted: [] as number[],
    accepts: async () => true,
    post: async (_request: ExportMetricsRequest, points: number) => {
      calls += 1;
      if (calls === failAt) throw new Error('LLMFlow went away');
      sink.posted.push(points);
      return { stored: points, refused: 0 };
    },
  };
  return sink;
}

test('a job tried after a failure part way posts only the requests LLMFlow did not take', async () => {
  const store = new MetricsStore(client);
  const request = tokens({
    temporality: Temporality.CUMULATIVE,
    session: 'retried',
    time: t(1),
    values: { input: 1, output: 2, cacheRead: 3, cacheCreation: 4 },
  });
  const sink = recordingSink(2);
  const deps = { store, sink, log: silentLogger, maxPointsPerRequest: 2 };
  await assert.rejects(forwardMetrics(deps, 'job-retried', request, 5), /went away/);
  assert.deepEqual(sink.posted, [2]);
  const summary = await forwardMetrics(deps, 'job-retried', request, 5);
  assert.deepEqual(sink.posted, [2, 2, 1], 'the first request once, then the rest');
  assert.equal(summary.sent, 3);
  await forwardMetrics(deps, 'job-retried', request, 5);
  assert.deepEqual(sink.posted, [2, 2, 1], 'a job done is not posted again');
});

/** A logger whose lines are kept, as `level msg`. */
function capturingLog(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const log = createLogger('info', {
    write: (line: string) => {
      const { level, msg } = JSON.parse(line) as { level: string; msg: string };
      lines.push(`${level} ${msg}`);
    },
  });
  return { log, lines };
}

test('LLMFlow 0.4.1 takes the points and sums the tokens; an LLMFlow without /v1/metrics gets none, and the bridge says so once', async () => {
  const store = new MetricsStore(client);
  const { log, lines } = capturingLog();
  const sink = new LlmflowMetricsClient({ url: llmflow.url, timeoutMs: 5_000, log });
  const request = tokens({
    temporality: Temporality.DELTA,
    session: 'llmflow',
    time: t(1),
    values: { input: 30, output: 7 },
  });
  const summary = await forwardMetrics({ store, sink, log, maxPointsPerRequest: 512 }, 'job-llmflow', request, 3);
  assert.deepEqual(summary, { points: 3, sent: 3 });
  assert.deepEqual(await llmflow.metricTokens(), { 'claude-x input': 30, 'claude-x output': 7 });
  assert.deepEqual(
    lines.filter((l) => /metrics/.test(l)),
    ["info LLMFlow accepts metrics: Claude Code's metrics are forwarded to it"],
  );

  // An older LLMFlow: the gate answers 404 on /v1/metrics, as a server without the route does.
  const gate = await startLlmflowGate(llmflow.url, { notFound: (path) => path.startsWith('/v1/metrics') });
  try {
    const older = capturingLog();
    let now = 0;
    const old = new LlmflowMetricsClient({ url: gate.url, timeoutMs: 5_000, log: older.log, now: () => now });
    for (let i = 0; i < 3; i++) {
      const s = await forwardMetrics(
        { store, sink: old, log: older.log, maxPointsPerRequest: 512 },
        `job-old-${i}`,
        request,
        3,
      );
      assert.deepEqual(s, { points: 3, sent: 0, unsupported: 3 });
    }
    assert.equal(gate.notFound, 1, 'asked once');
    now += 11 * 60_000;
    await forwardMetrics({ store, sink: old, log: older.log, maxPointsPerRequest: 512 }, 'job-old-later', request, 3);
    assert.equal(gate.notFound, 2, 'and again a while after its no');
    assert.equal(older.lines.filter((l) => /no metrics endpoint/.test(l)).length, 1, 'said once');
    assert.match(
      older.lines.find((l) => /no metrics endpoint/.test(l))!,
      /^warn /,
    );
  } finally {
    await gate.stop();
  }
  assert.deepEqual(
    await llmflow.metricTokens(),
    { 'claude-x input': 30, 'claude-x output': 7 },
    'nothing more reached LLMFlow',
  );
});

test('an LLMFlow that refuses metrics after taking them is asked again before anything more is sent', async () => {
  const store = new MetricsStore(client);
  let gone = false;
  const gate = await startLlmflowGate(llmflow.url, { notFound: (path) => gone && path.startsWith('/v1/metrics') });
  try {
    const { log, lines } = capturingLog();
    const sink = new LlmflowMetricsClient({ url: gate.url, timeoutMs: 5_000, log });
    const deps = { store, sink, log, maxPointsPerRequest: 512 };
    const request = (session: string) =>
      tokens({ temporality: Temporality.DELTA, session, time: t(1), values: { input: 1 } });
    assert.deepEqual(await forwardMetrics(deps, 'job-before', request('before'), 2), { points: 2, sent: 2 });
    // Replaced by an LLMFlow without the route.
    gone = true;
    assert.deepEqual(await forwardMetrics(deps, 'job-after', request('after'), 2), {
      points: 2,
      sent: 0,
      unsupported: 2,
    });
    assert.equal(gate.notFound, 2, 'the refused request, then the question asked again');
    assert.deepEqual(await forwardMetrics(deps, 'job-later', request('later'), 2), {
      points: 2,
      sent: 0,
      unsupported: 2,
    });
    assert.equal(gate.notFound, 2, 'its no holds for a while');
    assert.deepEqual(
      lines.filter((l) => /metrics/.test(l)).map((l) => l.split(' ')[0]),
      ['info', 'warn'],
      'each answer said once',
    );
  } finally {
    await gate.stop();
  }
});
