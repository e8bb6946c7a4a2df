/**
 * The queue is bounded in bytes: an ingest-only bridge (nothing drains its queue, as while
 * LLMFlow is away) takes Collector-sized batches of real Claude Code events until the queue
 * holds BRIDGE_QUEUE_MAX_BYTES, then answers 503 + Retry-After, and Redis stays under the memory
 * it is given. With a larger byte bound, Redis's own `maxmemory` is what stops it, before Redis
 * refuses a write. Batches are stored compact: about what they took on the wire.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import zlib from 'node:zlib';
import { Redis } from 'ioredis';
import { encodeExportRequest, type LogRecord } from '@ccbridge/otlp';
import { queueBytesKey } from '@ccbridge/redis';
import { logsOf } from '../support/fixtures';
import { recordsOf, requestOf } from '../support/assembly';
import { post, startBridge, startRedis, type BridgePeer, type RedisPeer } from '../support/peers';

const MAXMEMORY = 48 * 1024 * 1024;
let redis: RedisPeer;
let client: Redis;

before(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
  await client.config('SET', 'maxmemory', String(MAXMEMORY));
  await client.config('SET', 'maxmemory-policy', 'noeviction');
});
after(async () => {
  client?.disconnect();
  await redis?.stop();
});

const template = logsOf('json', 'tool');

/** A batch the size a Collector sends (1,024 records), each session its own; `noise` makes it compress badly. */
function collectorBatch(n: number, noise = 0): { body: Buffer; records: number; wire: number } {
  const records: LogRecord[] = [];
  for (let i = 0; records.length < 1024; i++) {
    for (const r of recordsOf(template)) {
      if (records.length === 1024) break;
      const attributes = r.attributes!.map((a) =>
        a.key === 'session.id' || a.key === 'prompt.id'
          ? { key: a.key, value: { stringValue: `${a.value!.stringValue}-${n}-${i}` } }
          : a,
      );
      if (noise) attributes.push({ key: 'noise', value: { stringValue: randomBytes(noise).toString('hex') } });
      records.push({ ...r, attributes });
    }
  }
  const body = zlib.gzipSync(encodeExportRequest('logs', requestOf(template, records), 'protobuf'));
  return { body, records: records.length, wire: body.length };
}

/** Posts batches until the bridge answers other than 200; returns what was taken, and that answer. */
async function fill(bridge: BridgePeer, noise: number, limit: number) {
  let taken = 0;
  let records = 0;
  let wire = 0;
  for (let n = 0; n < limit; n++) {
    const b = collectorBatch(n, noise);
    const r = await post(`${bridge.url}/v1/logs`, b.body, 'application/x-protobuf', { 'content-encoding': 'gzip' });
    if (r.status !== 200) return { taken, records, wire, refusal: r };
    taken += 1;
    records += b.records;
    wire += b.wire;
  }
  throw new Error(`the bridge took ${limit} batches without a 503`);
}

const memory = async () => {
  const info = await client.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)![1]);
};

test('Collector-sized batches fill the queue to BRIDGE_QUEUE_MAX_BYTES, then 503 + Retry-After; Redis stays under its memory', async () => {
  const total = 2 * 1024 * 1024;
  // The events' part of it: the metrics keep a sixteenth (BRIDGE_QUEUE_METRICS_MAX_BYTES unset).
  const bound = total - total / 16;
  const bridge = await startBridge({
    REDIS_URL: redis.url,
    BRIDGE_ROLE: 'ingest',
    BRIDGE_QUEUE_MAX_BYTES: String(total),
  });
  try {
    const { taken, records, wire, refusal } = await fill(bridge, 0, 5_000);
    assert.equal(refusal.status, 503);
    assert.ok(Number(refusal.headers.get('retry-after')) > 0, 'Retry-After');
    const queued = Number(await client.get(queueBytesKey()));
    assert.ok(queued >= bound, `the queue holds its bound: ${queued} bytes`);
    // The bound is read once a second, so a few batches may land past it; no more than that.
    assert.ok(queued < bound * 1.5, `not far past it: ${queued} bytes in ${taken} batches`);
    assert.ok((await memory()) < MAXMEMORY, 'Redis under its memory');
    // Stored compact: at most twice the gzip'd wire bytes per record (it was 70 times).
    const perRecord = queued / records;
    const wirePerRecord = wire / records;
    assert.ok(
      perRecord <= 2 * wirePerRecord,
      `${perRecord.toFixed(1)} bytes a record in Redis against ${wirePerRecord.toFixed(1)} on the wire`,
    );
    // Metrics never take the events' room, nor the events theirs: still stored while the events' part is full.
    const metrics = Buffer.from(
      JSON.stringify({
        resourceMetrics: [{ scopeMetrics: [{ metrics: [{ name: 'm', gauge: { dataPoints: [{ asDouble: 1 }] } }] }] }],
      }),
    );
    assert.equal((await post(`${bridge.url}/v1/metrics`, metrics, 'application/json')).status, 200);
  } finally {
    await bridge.stop();
    await client.flushall();
  }
});

test("with a byte bound larger than Redis, Redis's maxmemory stops the queue first, and no write is refused", async () => {
  const bridge = await startBridge({ REDIS_URL: redis.url, BRIDGE_ROLE: 'ingest', BRIDGE_QUEUE_MAX_BYTES: '1024MiB' });
  try {
    const { refusal } = await fill(bridge, 256, 5_000);
    assert.equal(refusal.status, 503);
    assert.ok(Number(refusal.headers.get('retry-after')) > 0, 'Retry-After');
    assert.doesNotMatch(bridge.output(), /could not store a batch/, 'Redis never refused a write');
    const used = await memory();
    assert.ok(used < MAXMEMORY && used > MAXMEMORY * 0.85, `stopped near the mark: ${used} of ${MAXMEMORY}`);
  } finally {
    await bridge.stop();
    await client.flushall();
  }
});
