/**
 * The bridge as a process: configuration errors, roles in separate processes sharing one
 * Redis, graceful SIGTERM (open turns stay in Redis for the next worker), and the private
 * redis-server it starts when REDIS_URL is unset.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { queueKey } from '@ccbridge/redis';
import { redisAnswersAt } from '../support/redis-probe';
import type { LogRecord } from '@ccbridge/otlp';
import { expectedSpans, logsOf, payloads } from '../support/fixtures';
import { recordsOf, requestOf } from '../support/assembly';
import { Redis } from 'ioredis';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { exportGrpc } from '../support/otlp-grpc';
import { startRelay } from '../support/relay';
import {
  post,
  startOkSink,
  startBridge,
  startLlmflow,
  startRedis,
  tempDir,
  waitFor,
  type BridgePeer,
  type LlmflowPeer,
  type RedisPeer,
} from '../support/peers';

let redis: RedisPeer;
let llmflow: LlmflowPeer;

before(async () => {
  [redis, llmflow] = await Promise.all([startRedis(), startLlmflow()]);
});
after(async () => {
  await Promise.all([llmflow?.stop(), redis?.stop()]);
});

async function postScenario(url: string, scenario: 'simple' | 'tool' | 'two-tools') {
  for (const p of payloads('protobuf', scenario)) {
    const r = await post(`${url}/v1/${p.signal}`, p.body, 'application/x-protobuf');
    assert.equal(r.status, 200);
  }
}

test('a bad variable stops start-up with a message that names it', async () => {
  for (const [name, value] of [
    ['OTLP_HTTP_PORT', 'http'],
    ['BRIDGE_INTERACTION_IDLE_MS', 'soon'],
    ['LLMFLOW_URL', 'llmflow:3000'],
  ]) {
    const bridge = await startBridge({ [name!]: value!, REDIS_URL: redis.url }, { waitReady: false });
    const code = await new Promise<number | null>((resolve) => bridge.child.once('exit', resolve));
    assert.equal(code, 2);
    assert.match(bridge.output(), new RegExp(`${name}=`));
  }
});

test('ports of 0: the bridge binds what the system hands it, and reports the ports in its ports file, its start-up line and /healthz', async () => {
  const portsFile = path.join(tempDir('ports'), 'ports.json');
  // startBridge passes ports of 0. Its own Redis and sink: the other tests read the shared LLMFlow.
  const [own, sink] = [await startRedis(), await startOkSink()];
  const bridge = await startBridge({ REDIS_URL: own.url, LLMFLOW_URL: sink.url, BRIDGE_PORTS_FILE: portsFile });
  const ports = JSON.parse(readFileSync(portsFile, 'utf8')) as Record<string, number>;
  assert.deepEqual(Object.keys(ports).sort(), ['metrics', 'otlpGrpc', 'otlpHttp']);
  for (const port of Object.values(ports)) assert.ok(port > 0, `a real port: ${port}`);
  assert.deepEqual(
    [bridge.port, bridge.grpcPort, bridge.adminUrl],
    [ports.otlpHttp, ports.otlpGrpc, `http://127.0.0.1:${ports.metrics}`],
  );
  const started = bridge
    .output()
    .split('\n')
    .map((l) => (l.startsWith('{') ? (JSON.parse(l) as Record<string, unknown>) : {}))
    .find((l) => l.msg === 'bridge started')!;
  assert.deepEqual(
    [started.port, started.grpcPort, started.metricsPort],
    [ports.otlpHttp, ports.otlpGrpc, ports.metrics],
  );
  assert.deepEqual(((await (await fetch(`${bridge.adminUrl}/healthz`)).json()) as { ports: unknown }).ports, ports);
  // Both receivers answer on the ports reported.
  await postScenario(bridge.url, 'simple');
  const grpcLogs = payloads('protobuf', 'simple').find((p) => p.signal === 'logs')!;
  assert.equal((await exportGrpc(`127.0.0.1:${ports.otlpGrpc}`, 'logs', grpcLogs.body)).code, 0);
  await bridge.stop();
  await Promise.all([own.stop(), sink.close()]);
});

test('ingest and workers run as separate processes over one Redis; a stopping worker draws nothing early, and the next one carries the turn on', async () => {
  const common = { REDIS_URL: redis.url, LLMFLOW_URL: llmflow.url };
  const request = logsOf('json', 'tool');
  const records = recordsOf(request);
  const end = records.filter((r) => r.body?.stringValue === 'claude_code.assistant_response');
  const postLogs = async (url: string, list: LogRecord[]) =>
    assert.equal(
      (await post(`${url}/v1/logs`, Buffer.from(JSON.stringify(requestOf(request, list))), 'application/json')).status,
      200,
    );
  const ingest = await startBridge({ ...common, BRIDGE_ROLE: 'ingest' });
  const workers = [
    await startBridge({ ...common, BRIDGE_ROLE: 'worker' }),
    await startBridge({ ...common, BRIDGE_ROLE: 'worker' }),
  ];
  let next: BridgePeer | undefined;
  try {
    // A worker serves health and metrics on its own port, and no OTLP receiver (so an ingest and
    // a worker on one host do not clash).
    assert.equal((await fetch(`${workers[0]!.adminUrl}/readyz`)).status, 200);
    assert.match(await (await fetch(`${workers[0]!.adminUrl}/metrics`)).text(), /target_info/);
    await assert.rejects(post(`${workers[0]!.url}/v1/logs`, Buffer.from('{}'), 'application/json'));
    // The turn so far: its children arrive at once, its root waits for its end.
    await postLogs(
      ingest.url,
      records.filter((r) => !end.includes(r)),
    );
    const children = await waitFor('the child spans', async () => {
      const s = await llmflow.listed();
      // All but the root and the last LLM call, which waits for its answer (held back with the end).
      return s.length >= expectedSpans('json', 'tool').total - 1 - end.length ? s : undefined;
    });
    assert.ok(
      children.every((s) => s.parent_id),
      'no root yet',
    );
    // Both workers stop at once, mid-turn (a `docker compose up -d` that recreates them).
    assert.deepEqual(await Promise.all(workers.map((w) => w.stop('SIGTERM'))), [0, 0], 'graceful exits');
    for (const w of workers) assert.match(w.output(), /"msg":"stopped"/);
    assert.equal((await llmflow.listed()).filter((s) => !s.parent_id).length, 0, 'no root drawn at shutdown');
    // The turn ends while no worker runs; the next worker carries on from Redis.
    await postLogs(ingest.url, end);
    next = await startBridge({ ...common, BRIDGE_ROLE: 'worker' });
    const root = await waitFor('the root, drawn by the next worker', async () =>
      (await llmflow.spans()).find((s) => !s.parent_id && s.trace_id === children[0]!.trace_id),
    );
    const attrs = JSON.parse(root.attributes) as Record<string, unknown>;
    assert.equal(attrs['claude_code.interaction.complete'], true);
    assert.equal(attrs['claude_code.interaction.end'], 'response');
  } finally {
    await Promise.all([ingest.stop(), ...workers.map((w) => w.stop()), next?.stop()]);
  }
});

test('with REDIS_URL unset it starts a private redis-server under BRIDGE_DATA_DIR when nothing answers at the default address, and uses what answers there otherwise', async () => {
  // This test needs the default address to itself: it runs both cases, each under its condition.
  assert.equal(await redisAnswersAt(6379), false, 'something else answers on 127.0.0.1:6379: stop it to run this test');
  const dataDir = tempDir('data');
  const privately = await startBridge({ LLMFLOW_URL: llmflow.url, BRIDGE_DATA_DIR: dataDir });
  try {
    await postScenario(privately.url, 'simple');
    assert.match(privately.output(), /started a private redis-server/);
    assert.match(privately.output(), /"redis":"redis:\/\/127\.0\.0\.1:6379"/);
    assert.equal(await redisAnswersAt(6379), true);
  } finally {
    assert.equal(await privately.stop('SIGTERM'), 0);
  }
  assert.equal(await redisAnswersAt(6379), false, 'the private redis-server stops with the bridge');
  const shared = await startRedis(6379);
  const bridge = await startBridge({ LLMFLOW_URL: llmflow.url, BRIDGE_DATA_DIR: tempDir('data') });
  try {
    await postScenario(bridge.url, 'simple');
    assert.match(bridge.output(), /"redis":"redis:\/\/127\.0\.0\.1:6379"/);
    assert.doesNotMatch(bridge.output(), /started a private redis-server/);
  } finally {
    assert.equal(await bridge.stop('SIGTERM'), 0);
    await shared.stop();
  }
});

test('while LLMFlow is away, batches wait in the queue using up none of their attempts, and arrive once it is back', async () => {
  // LLMFlow's address answers nothing at first (each connection reset), then leads to one started late.
  const away = await startRelay();
  const bridge = await startBridge({ REDIS_URL: redis.url, LLMFLOW_URL: away.url, BRIDGE_JOB_ATTEMPTS: '1' });
  let late: LlmflowPeer | undefined;
  const client = new Redis(redis.url);
  try {
    await postScenario(bridge.url, 'two-tools');
    await waitFor('the worker to notice LLMFlow is away', () => /LLMFlow is unavailable/.test(bridge.output()));
    late = await startLlmflow();
    away.target = new URL(late.url).host;
    const want = expectedSpans('protobuf', 'two-tools').total;
    const spans = await waitFor(
      'the whole trace in the late LLMFlow',
      async () => {
        const s = await late!.listed();
        return s.length >= want && s.some((x) => !x.parent_id) ? s : undefined;
      },
      60_000,
    );
    assert.equal(spans.length, want);
    assert.equal(await client.zcard(queueKey('failed')), 0, 'no batch used up its single attempt');
  } finally {
    client.disconnect();
    await bridge.stop();
    await late?.stop();
    await away.stop();
  }
});
