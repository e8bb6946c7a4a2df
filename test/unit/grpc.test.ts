import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { InflightGate, closeGrpc, createGrpcReceiver, listenGrpc } from '@ccbridge/ingest';
import { silentLogger } from '@ccbridge/log';
import type { Signal } from '@ccbridge/otlp';
import { payloads } from '../support/fixtures';
import { RecordingSink } from '../support/recording-sink';
import { exportGrpc } from '../support/otlp-grpc';

const MAX = 64 * 1024;
const sink = new RecordingSink();
const server = createGrpcReceiver({ sink, maxBodyBytes: MAX, log: silentLogger, gate: new InflightGate(8) });
let port = 0;

before(async () => {
  port = await listenGrpc(server, '127.0.0.1', 0);
});
after(() => closeGrpc(server));

const exportRaw = (signal: Signal, body: Buffer, gzip = false) => exportGrpc(`127.0.0.1:${port}`, signal, body, gzip);

const logs = payloads('protobuf', 'two-tools').find((p) => p.signal === 'logs')!.body;
const metrics = payloads('protobuf', 'two-tools').find((p) => p.signal === 'metrics')!.body;

test('Export on each service answers an empty response, gzip or not; logs and metrics are stored', async () => {
  sink.batches = [];
  const r = await exportRaw('logs', logs);
  assert.equal(r.code, grpc.status.OK);
  assert.equal(r.response!.length, 0);
  assert.equal((await exportRaw('metrics', metrics, true)).code, grpc.status.OK);
  assert.equal((await exportRaw('traces', Buffer.alloc(0))).code, grpc.status.OK);
  assert.deepEqual(
    sink.batches.map((b) => b.signal),
    ['logs', 'metrics'],
  );
});

test('a message that does not decode is INVALID_ARGUMENT, with the reason', async () => {
  const r = await exportRaw('logs', Buffer.from([0x0a, 0xff, 0xff, 0xff]));
  assert.equal(r.code, grpc.status.INVALID_ARGUMENT);
  assert.match(r.details ?? '', /protobuf/);
});

test('queue full or Redis away is UNAVAILABLE (retryable); above the limit RESOURCE_EXHAUSTED', async () => {
  sink.acceptanceNow = 'full';
  assert.equal((await exportRaw('logs', logs)).code, grpc.status.UNAVAILABLE);
  sink.acceptanceNow = 'unavailable';
  assert.equal((await exportRaw('logs', logs)).code, grpc.status.UNAVAILABLE);
  sink.acceptanceNow = 'ok';
  assert.equal((await exportRaw('logs', Buffer.alloc(MAX + 10, 0))).code, grpc.status.RESOURCE_EXHAUSTED);
});

test('a fault of no known kind in a call is UNAVAILABLE (retryable, as the Collector treats an unmarked error), not left unhandled, and the call leaves the gate', async () => {
  const failing = new RecordingSink();
  let failures = 1;
  failing.acceptance = async () => {
    if (failures-- > 0) throw new Error('a fault in the sink');
    return 'ok';
  };
  // One call at a time: the second is answered only if the failed one left the gate.
  const own = createGrpcReceiver({ sink: failing, maxBodyBytes: MAX, log: silentLogger, gate: new InflightGate(1) });
  const ownPort = await listenGrpc(own, '127.0.0.1', 0);
  try {
    // A deadline, so that a call never answered fails the test rather than hanging it.
    const r = await exportGrpc(`127.0.0.1:${ownPort}`, 'logs', logs, false, { deadlineMs: 10_000 });
    assert.equal(r.code, grpc.status.UNAVAILABLE);
    assert.match(r.details ?? '', /a fault in the sink/);
    assert.equal((await exportGrpc(`127.0.0.1:${ownPort}`, 'logs', logs)).code, grpc.status.OK);
    assert.deepEqual(
      failing.batches.map((b) => b.signal),
      ['logs'],
    );
  } finally {
    await closeGrpc(own);
  }
});
