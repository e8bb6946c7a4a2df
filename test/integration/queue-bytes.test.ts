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
import { queueBytesKey, queueJobKeyPrefix, queueKey } from '@ccbridge/redis';
import { waitFor } from '../support/peers';
import { useRedis } from '../support/per-file';

const peers = useRedis();

const batch = (n: number) => {
  const protobuf = encodeExportRequest('logs', { resourceLogs: [{ scopeLogs: [{ logRecords: Array.from({ length: n }, (_, i) => ({ body: { stringValue: `record ${i} of ${n}` } })) }] }] }, 'protobuf');
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
  const producer = new BatchProducer(peers.client, { maxWaiting: 1_000, maxBytes: 100_000_000, attempts: 3, recountMs: 60_000 });
  const t0 = Date.now();
  assert.equal(await producer.acceptance(t0), 'ok');
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
  assert.equal(await producer.acceptance(t0 + 2_000), 'ok');
  assert.equal(await counted(), exact + 50_000_000, 'not recounted before its interval');
  const lowBound = new BatchProducer(peers.client, { maxWaiting: 1_000, maxBytes: exact + 1, attempts: 3, recountMs: 60_000 });
  assert.equal(await lowBound.acceptance(t0), 'ok', 'a fresh producer recounts at its first reading, so the stale count does not refuse');
  assert.equal(await counted(), exact);
  await peers.client.set(queueBytesKey(), '7');
  assert.equal(await producer.acceptance(t0 + 61_000), 'ok');
  assert.equal(await counted(), exact, 'recounted from the jobs');

  const consumer = new BatchConsumer(peers.client, async () => undefined, { concurrency: 2 });
  try {
    await waitFor('the queue to drain', async () => (await peers.client.llen(queueKey('wait'))) + (await peers.client.llen(queueKey('active'))) === 0 && (await counted()) === 0, 20_000);
  } finally {
    await consumer.close();
  }
  assert.equal(await counted(), 0);
  await peers.client.set(queueBytesKey(), '12345');
  await producer.acceptance(t0 + 122_000);
  assert.equal(await counted(), 0, 'an empty queue recounts to zero');
  await Promise.all([producer.close(), lowBound.close()]);
});
