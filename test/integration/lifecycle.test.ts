/**
 * The bridge as a process: configuration errors, roles in separate processes sharing one
 * Redis, graceful SIGTERM (open interactions get their roots), and the private redis-server
 * it starts when REDIS_URL is unset.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { redisAnswersAt } from '../support/redis-probe';
import { expectedSpans, payloads } from '../support/fixtures';
import { Redis } from 'ioredis';
import { freePort, post, startBridge, startLlmflow, startRedis, tempDir, waitFor, type LlmflowPeer, type RedisPeer } from '../support/peers';

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
  for (const [name, value] of [['OTLP_HTTP_PORT', 'http'], ['BRIDGE_INTERACTION_IDLE_MS', 'soon'], ['LLMFLOW_URL', 'llmflow:3000']]) {
    const bridge = await startBridge({ [name!]: value!, REDIS_URL: redis.url }, { waitReady: false });
    const code = await new Promise<number | null>((resolve) => bridge.child.once('exit', resolve));
    assert.equal(code, 2);
    assert.match(bridge.output(), new RegExp(`${name}=`));
  }
});

test('ingest and workers run as separate processes over one Redis; the last worker to stop closes open interactions', async () => {
  const common = { REDIS_URL: redis.url, LLMFLOW_URL: llmflow.url, BRIDGE_INTERACTION_IDLE_MS: '600000' };
  const ingest = await startBridge({ ...common, BRIDGE_ROLE: 'ingest' });
  const workers = [await startBridge({ ...common, BRIDGE_ROLE: 'worker' }), await startBridge({ ...common, BRIDGE_ROLE: 'worker' })];
  try {
    // A worker's port serves health only.
    assert.equal((await fetch(`${workers[0]!.url}/readyz`)).status, 200);
    assert.equal((await post(`${workers[0]!.url}/v1/logs`, Buffer.from('{}'), 'application/json')).status, 404);
    await postScenario(ingest.url, 'tool');
    // Children arrive at once; the root waits for the interaction to go quiet (10 minutes here).
    const children = await waitFor('the child spans', async () => {
      const s = await llmflow.listed();
      return s.length >= expectedSpans('protobuf', 'tool').total - 1 ? s : undefined;
    });
    assert.ok(children.every((s) => s.parent_id), 'no root yet');
    assert.equal(await workers[0]!.stop('SIGTERM'), 0, 'graceful exit');
    assert.match(workers[0]!.output(), /leaving open interactions to the other workers/);
    assert.equal((await llmflow.listed()).filter((s) => !s.parent_id).length, 0, 'another worker still runs: no root yet');
    assert.equal(await workers[1]!.stop('SIGTERM'), 0);
    const roots = (await llmflow.listed()).filter((s) => !s.parent_id && s.trace_id === children[0]!.trace_id);
    assert.equal(roots.length, 1, 'the last worker drew the root of the open interaction');
    assert.match(workers[1]!.output(), /"msg":"stopped"/);
  } finally {
    await Promise.all([ingest.stop(), ...workers.map((w) => w.stop())]);
  }
});

test('with REDIS_URL unset it uses the default Redis, or starts a private redis-server under BRIDGE_DATA_DIR', async () => {
  const defaultWasUp = await redisAnswersAt(6379);
  const dataDir = tempDir('data');
  const bridge = await startBridge({ LLMFLOW_URL: llmflow.url, BRIDGE_DATA_DIR: dataDir });
  try {
    await postScenario(bridge.url, 'simple');
    assert.match(bridge.output(), /"redis":"redis:\/\/127\.0\.0\.1:6379"/);
    if (!defaultWasUp) assert.match(bridge.output(), /started a private redis-server/);
  } finally {
    assert.equal(await bridge.stop('SIGTERM'), 0);
  }
  if (!defaultWasUp) assert.equal(await redisAnswersAt(6379), false, 'the private redis-server stops with the bridge');
});

test('while LLMFlow is away, batches wait in the queue using up none of their attempts, and arrive once it is back', async () => {
  const port = await freePort();
  const bridge = await startBridge({ REDIS_URL: redis.url, LLMFLOW_URL: `http://127.0.0.1:${port}`, BRIDGE_JOB_ATTEMPTS: '1', BRIDGE_INTERACTION_IDLE_MS: '300' });
  let late: LlmflowPeer | undefined;
  const client = new Redis(redis.url);
  try {
    await postScenario(bridge.url, 'two-tools');
    await waitFor('the worker to notice LLMFlow is away', () => /LLMFlow is unavailable/.test(bridge.output()));
    late = await startLlmflow(port);
    const want = expectedSpans('protobuf', 'two-tools').total;
    const spans = await waitFor('the whole trace in the late LLMFlow', async () => {
      const s = await late!.listed();
      return s.length >= want && s.some((x) => !x.parent_id) ? s : undefined;
    }, 60_000);
    assert.equal(spans.length, want);
    assert.equal(await client.zcard('ccbridge:otlp-batches:failed'), 0, 'no batch used up its single attempt');
  } finally {
    client.disconnect();
    await bridge.stop();
    await late?.stop();
  }
});
