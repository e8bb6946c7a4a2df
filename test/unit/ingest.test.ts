import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import zlib from 'node:zlib';
import { InflightGate, createHttpApp } from '@ccbridge/ingest';
import { silentLogger } from '@ccbridge/log';
import { root } from '@ccbridge/otlp';
import { payloads } from '../support/fixtures';
import { RecordingSink } from '../support/recording-sink';
import { post, waitFor } from '../support/peers';

const MAX = 64 * 1024;
const sink = new RecordingSink();
const gate = new InflightGate(2);
let ready = true;
let server: http.Server;
let base = '';

before(async () => {
  server = http.createServer(
    createHttpApp({ ready: async () => ready }, { sink, maxBodyBytes: MAX, log: silentLogger, gate }),
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
after(() => new Promise<void>((r) => server.close(() => r())));

const statusOf = (body: Buffer, format: 'json' | 'protobuf') => {
  if (format === 'json') return JSON.parse(body.toString()) as { code: number; message: string };
  const t = root.lookupType('google.rpc.Status');
  return t.toObject(t.decode(body)) as { code: number; message: string };
};

const logsPb = payloads('protobuf', 'tool').find((p) => p.signal === 'logs')!;
const logsJson = payloads('json', 'tool').find((p) => p.signal === 'logs')!;
const metricsPb = payloads('protobuf', 'tool').find((p) => p.signal === 'metrics')!;

test('protobuf logs: 200 with an empty protobuf ExportLogsServiceResponse, batch handed on', async () => {
  sink.batches = [];
  const r = await post(`${base}/v1/logs`, logsPb.body, 'application/x-protobuf');
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'application/x-protobuf');
  assert.equal(r.body.length, 0);
  assert.deepEqual(
    sink.batches.map((b) => b.signal),
    ['logs'],
  );
  assert.ok(sink.batches[0]!.items > 5);
});

test('JSON logs and gzip-compressed protobuf metrics are taken too; metrics are queued, or only acknowledged while not forwarded', async () => {
  sink.batches = [];
  const j = await post(`${base}/v1/logs`, logsJson.body, 'application/json; charset=utf-8');
  assert.equal(j.status, 200);
  assert.equal(j.body.toString(), '{}');
  const m = await post(`${base}/v1/metrics`, zlib.gzipSync(metricsPb.body), 'application/x-protobuf', {
    'content-encoding': 'gzip',
  });
  assert.equal(m.status, 200);
  assert.deepEqual(
    sink.batches.map((b) => b.signal),
    ['logs', 'metrics'],
  );
  sink.queued.delete('metrics');
  try {
    const off = await post(`${base}/v1/metrics`, metricsPb.body, 'application/x-protobuf');
    assert.equal(off.status, 200);
    assert.deepEqual(
      sink.batches.map((b) => b.signal),
      ['logs', 'metrics'],
      'not queued while forwarding is off',
    );
  } finally {
    sink.queued.add('metrics');
  }
  const bad = await post(`${base}/v1/metrics`, Buffer.from([0x0a, 0xff, 0xff]), 'application/x-protobuf');
  assert.equal(bad.status, 400, 'metrics are still validated');
});

test('a body that does not decode: 400 with a Status in the request format', async () => {
  const j = await post(`${base}/v1/traces`, Buffer.from('{"resourceSpans": {"oops": 1}}'), 'application/json');
  assert.equal(j.status, 400);
  assert.match(statusOf(j.body, 'json').message, /array expected/);
  const p = await post(`${base}/v1/logs`, Buffer.from([0x0a, 0xff, 0xff]), 'application/x-protobuf');
  assert.equal(p.status, 400);
  assert.equal(p.headers.get('content-type'), 'application/x-protobuf');
  assert.match(statusOf(p.body, 'protobuf').message, /protobuf/);
  const g = await post(`${base}/v1/logs`, Buffer.from('not gzip at all'), 'application/json', {
    'content-encoding': 'gzip',
  });
  assert.equal(g.status, 400);
  // An attribute value nested 2,000 arrays deep (6,000 JSON levels): refused with a reason, not a stack overflow (500).
  const deep = `{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"attributes":[{"key":"k","value":${'{"arrayValue":{"values":['.repeat(2_000)}${']}}'.repeat(2_000)}}]}]}]}]}`;
  const d = await post(`${base}/v1/logs`, Buffer.from(deep), 'application/json');
  assert.equal(d.status, 400);
  assert.match(statusOf(d.body, 'json').message, /nests deeper than/);
});

test('other content types and encodings: 415', async () => {
  const t = await post(`${base}/v1/logs`, Buffer.from('hello'), 'text/plain');
  assert.equal(t.status, 415);
  assert.match(statusOf(t.body, 'json').message, /application\/x-protobuf/);
  const z = await post(`${base}/v1/logs`, logsJson.body, 'application/json', { 'content-encoding': 'zstd' });
  assert.equal(z.status, 415);
});

test('above the size limit, compressed or not: 413', async () => {
  const big = Buffer.alloc(MAX + 1, 0x20);
  assert.equal((await post(`${base}/v1/logs`, big, 'application/json')).status, 413);
  const bomb = zlib.gzipSync(Buffer.alloc(MAX * 20, 0x20));
  assert.ok(bomb.length < MAX);
  assert.equal((await post(`${base}/v1/logs`, bomb, 'application/json', { 'content-encoding': 'gzip' })).status, 413);
});

test('queue full, Redis away, or a failed store: 503 with Retry-After, never 200', async () => {
  sink.batches = [];
  for (const state of ['full', 'unavailable'] as const) {
    sink.acceptanceNow = state;
    const r = await post(`${base}/v1/logs`, logsPb.body, 'application/x-protobuf');
    assert.equal(r.status, 503);
    assert.ok(Number(r.headers.get('retry-after')) > 0);
  }
  sink.acceptanceNow = 'ok';
  sink.failEnqueue = true;
  const r = await post(`${base}/v1/logs`, logsPb.body, 'application/x-protobuf');
  assert.equal(r.status, 503);
  sink.failEnqueue = false;
  assert.equal(sink.batches.length, 0);
});

test('an empty request is answered 200 and queues nothing', async () => {
  sink.batches = [];
  const r = await post(`${base}/v1/logs`, Buffer.alloc(0), 'application/x-protobuf');
  assert.equal(r.status, 200);
  assert.equal(sink.batches.length, 0);
});

test('GET on an OTLP path is 405; unknown paths 404', async () => {
  const r = await fetch(`${base}/v1/logs`);
  assert.equal(r.status, 405);
  assert.equal(r.headers.get('allow'), 'POST');
  assert.equal((await fetch(`${base}/v2/logs`)).status, 404);
});

test('/healthz is up while the process is; /readyz follows Redis', async () => {
  assert.equal((await fetch(`${base}/healthz`)).status, 200);
  ready = true;
  assert.equal((await fetch(`${base}/readyz`)).status, 200);
  ready = false;
  assert.equal((await fetch(`${base}/readyz`)).status, 503);
  ready = true;
});

test('past the requests it takes at once, the receiver answers 503 before reading the body; then takes more', async () => {
  let release!: () => void;
  sink.hold = new Promise<void>((r) => (release = r));
  const held = [
    post(`${base}/v1/logs`, logsPb.body, 'application/x-protobuf'),
    post(`${base}/v1/logs`, logsPb.body, 'application/x-protobuf'),
  ];
  await waitFor('two requests in flight', () => sink.waiting === 2);
  const busy = await post(`${base}/v1/logs`, logsPb.body, 'application/x-protobuf');
  assert.equal(busy.status, 503);
  assert.match(statusOf(busy.body, 'protobuf').message, /at once/);
  assert.ok(Number(busy.headers.get('retry-after')) > 0);
  sink.hold = undefined;
  release();
  assert.deepEqual(
    (await Promise.all(held)).map((r) => r.status),
    [200, 200],
  );
  assert.equal((await post(`${base}/v1/logs`, logsPb.body, 'application/x-protobuf')).status, 200);
});
