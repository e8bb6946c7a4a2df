/**
 * The queue maps an error's kind (@ccbridge/errors) to what BullMQ does with the job, against a
 * real Redis: permanent → the failed set at once (no attempt wasted on data that will fail
 * again), retryable → retried with back-off, backpressure → back to the queue with no attempt
 * used up.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeExportRequest } from '@ccbridge/otlp';
import { BackpressureError } from '@ccbridge/errors';
import { BatchConsumer, BatchProducer } from '@ccbridge/queue';
import { queueKey } from '@ccbridge/redis';
import { waitFor } from '../support/peers';
import { useRedis } from '../support/per-file';

const peers = useRedis();

const batch = () => ({
  items: 1,
  protobuf: encodeExportRequest(
    'logs',
    { resourceLogs: [{ scopeLogs: [{ logRecords: [{ body: { stringValue: 'x' } }] }] }] },
    'protobuf',
  ),
});

/** Queues one batch, consumes it with `fail` thrown on the first `times` attempts; returns the attempts seen. */
async function run(
  fail: () => Error,
  times: number,
): Promise<{ attempts: number[]; failed: number; failedReason?: string }> {
  await peers.client.flushall();
  const producer = new BatchProducer(peers.client, { maxWaiting: 100, maxBytes: 1_000_000, attempts: 5 });
  await producer.enqueue('logs', batch());
  const attempts: number[] = [];
  let finals = 0;
  const consumer = new BatchConsumer(
    peers.client,
    async (_job, info) => {
      attempts.push(info.attempt);
      if (attempts.length <= times) throw fail();
    },
    { concurrency: 1, onFailed: (_j, _e, final) => (finals += final ? 1 : 0) },
  );
  try {
    await waitFor(
      'the job to settle',
      async () => {
        const [waiting, active, delayed, failed] = await Promise.all([
          peers.client.llen(queueKey('wait')),
          peers.client.llen(queueKey('active')),
          peers.client.zcard(queueKey('delayed')),
          peers.client.zcard(queueKey('failed')),
        ]);
        return (waiting + active + delayed === 0 && attempts.length > times) || failed > 0;
      },
      30_000,
      20,
    );
    const failedIds = await peers.client.zrange(queueKey('failed'), 0, -1);
    const failedReason = failedIds[0]
      ? ((await peers.client.hget(`${queueKey(failedIds[0])}`, 'failedReason')) ?? undefined)
      : undefined;
    return { attempts, failed: failedIds.length, failedReason };
  } finally {
    await consumer.close();
    await producer.close();
  }
}

test('permanent (a RangeError from the data, or a PermanentError): failed at once, with its reason', async () => {
  const r = await run(() => new RangeError('The number Infinity cannot be converted to a BigInt'), 99);
  assert.deepEqual(r.attempts, [1], 'one attempt of five');
  assert.equal(r.failed, 1);
  assert.match(r.failedReason ?? '', /RangeError: The number Infinity/);
});

test('retryable (anything else): tried again, and taken when it succeeds', async () => {
  const r = await run(() => new Error('Connection is closed.'), 1);
  assert.deepEqual(r.attempts, [1, 2]);
  assert.equal(r.failed, 0);
});

test('backpressure: back to the queue with no attempt used up', async () => {
  const r = await run(() => new BackpressureError('LLMFlow is away', 50), 2);
  assert.deepEqual(r.attempts, [1, 1, 1], 'the same attempt each time');
  assert.equal(r.failed, 0);
});
