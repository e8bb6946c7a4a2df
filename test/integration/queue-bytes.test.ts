/**
 * The queue's byte count (the receiver's bound, BRIDGE_QUEUE_MAX_BYTES) against a real Redis: it
 * counts what each job's data takes in Redis, exactly; it returns to zero once the jobs are
 * processed; and when a process died between a step and its count, the producer's periodic
 * recount (recount.lua) puts it right from the jobs themselves.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeExportRequest } from '@ccbridge/otlp';
import { BatchConsumer, BatchProducer } from '@ccbridge/queue';
import { METRICS_QUEUE_NAME, queueBytesKey, queueJobKeyPrefix, queueKey } from '@ccbridge/redis';
import { waitFor } from '../support/peers';
import { useRedis } from '../support/per-file';

const peers = useRedis();

const batch = (n: number) => {
  const protobuf = encodeExportRequest(
    'logs',
    {
      resourceLogs: [
        {
          scopeLogs: [
            { logRecords: Array.from({ length: n }, (_, i) => ({ body: { stringValue: `record ${i} of ${n}` } })) },
          ],
        },
      ],
    },
    'protobuf',
  );
  return { items: n, protobuf };
};

/** What the waiting jobs' data take in Redis, job by job. */
async function jobBytes(): Promise<number> {
  const ids = await peers.client.lrange(queueKey('wait'), 0, -1);
  const lengths = await Promise.all(ids.map((id) => peers.client.hstrlen(`${queueJobKeyPrefix()}${id}`, 'data')));
  return lengths.reduce((a, b) => a + b, 0);
}
const counted = async () => Number(await peers.client.get(queueBytesKey()));

test('the byte count is what the jobs take, is recounted from them, and returns to zero once they are processed', async () => {
  const producer = new BatchProducer(peers.client, {
    maxWaiting: 1_000,
    maxBytes: 100_000_000,
    attempts: 3,
    recountMs: 60_000,
  });
  const t0 = Date.now();
  assert.equal(await producer.acceptance('logs', t0), 'ok');
  for (const n of [1, 5, 20]) await producer.enqueue('logs', batch(n));
  // Several at once: they share jobs (group commit), counted once per job.
  await Promise.all([2, 3, 4, 7].map((n) => producer.enqueue('logs', batch(n))));
  const jobs = await peers.client.llen(queueKey('wait'));
  assert.ok(jobs >= 4 && jobs < 7, `${jobs} jobs`);
  const exact = await jobBytes();
  assert.ok(exact > 0);
  assert.equal(await counted(), exact, 'counted as the jobs take it, to the byte');

  // A process killed between a step and its count leaves the count off; a reading within the
  // recount interval keeps it, the first after it counts again from the jobs.
  await peers.client.set(queueBytesKey(), String(exact + 50_000_000));
  assert.equal(await producer.acceptance('logs', t0 + 2_000), 'ok');
  assert.equal(await counted(), exact + 50_000_000, 'not recounted before its interval');
  const lowBound = new BatchProducer(peers.client, {
    maxWaiting: 1_000,
    maxBytes: exact + 1,
    attempts: 3,
    recountMs: 60_000,
  });
  assert.equal(
    await lowBound.acceptance('logs', t0),
    'ok',
    'a fresh producer recounts at its first reading, so the stale count does not refuse',
  );
  assert.equal(await counted(), exact);
  await peers.client.set(queueBytesKey(), '7');
  assert.equal(await producer.acceptance('logs', t0 + 61_000), 'ok');
  assert.equal(await counted(), exact, 'recounted from the jobs');

  const consumer = new BatchConsumer(peers.client, async () => undefined, { concurrency: 2 });
  try {
    await waitFor(
      'the queue to drain',
      async () =>
        (await peers.client.llen(queueKey('wait'))) + (await peers.client.llen(queueKey('active'))) === 0 &&
        (await counted()) === 0,
      20_000,
    );
  } finally {
    await consumer.close();
  }
  assert.equal(await counted(), 0);
  await peers.client.set(queueBytesKey(), '12345');
  await producer.acceptance('logs', t0 + 122_000);
  assert.equal(await counted(), 0, 'an empty queue recounts to zero');
  await Promise.all([producer.close(), lowBound.close()]);
});

test('metrics have their own queue and their own share of the bytes: full metrics never refuse events', async () => {
  const metrics = (n: number) => {
    const points = Array.from({ length: n }, (_, i) => ({
      timeUnixNano: String(i),
      asDouble: i,
      attributes: [{ key: 'type', value: { stringValue: `t${i}` } }],
    }));
    const protobuf = encodeExportRequest(
      'metrics',
      {
        resourceMetrics: [
          { scopeMetrics: [{ metrics: [{ name: 'claude_code.token.usage', sum: { dataPoints: points } }] }] },
        ],
      },
      'protobuf',
    );
    return { items: n, protobuf };
  };
  const metricsBytes = async () => Number(await peers.client.get(queueBytesKey(undefined, METRICS_QUEUE_NAME)));
  const before = await counted();
  const producer = new BatchProducer(peers.client, {
    maxWaiting: 1_000,
    maxBytes: 100_000_000,
    metricsMaxBytes: 2_000,
    attempts: 3,
    recountMs: 60_000,
  });
  const t0 = Date.now();
  assert.equal(producer.queues('metrics'), true);
  assert.equal(await producer.acceptance('metrics', t0), 'ok');
  for (let i = 0; i < 20 && (await producer.acceptance('metrics', t0 + 2_000 * i)) === 'ok'; i++)
    await producer.enqueue('metrics', metrics(20));
  assert.equal(await producer.acceptance('metrics', t0 + 50_000), 'full', "the metrics' share is used up");
  assert.equal(await producer.acceptance('logs', t0 + 50_000), 'ok', 'the events keep their room');
  assert.ok((await metricsBytes()) >= 2_000);
  assert.equal(await counted(), before, 'none of it counts against the events');
  assert.ok(
    (await peers.client.llen(queueKey('wait', undefined, METRICS_QUEUE_NAME))) > 0,
    "in the metrics' own queue",
  );
  assert.equal(await peers.client.llen(queueKey('wait')), 0, "none in the events' queue");
  const exact = await metricsBytes();
  await peers.client.set(queueBytesKey(undefined, METRICS_QUEUE_NAME), '3');
  await producer.acceptance('metrics', t0 + 120_000);
  assert.equal(await metricsBytes(), exact, 'recounted from its own jobs');

  const consumer = new BatchConsumer(peers.client, async () => undefined, {
    concurrency: 2,
    queue: METRICS_QUEUE_NAME,
  });
  try {
    await waitFor('the metrics queue to drain', async () => (await metricsBytes()) === 0, 20_000);
  } finally {
    await consumer.close();
  }
  assert.equal(await producer.acceptance('metrics', t0 + 200_000), 'ok');
  const without = new BatchProducer(peers.client, { maxWaiting: 1_000, maxBytes: 100_000_000, attempts: 3 });
  assert.equal(without.queues('metrics'), false, 'not queued without a share (forwarding off)');
  await Promise.all([producer.close(), without.close()]);
});
