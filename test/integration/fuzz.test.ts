/**
 * Fuzzing a real ingest process: 100,000 random and mutated OTLP/HTTP bodies (protobuf, JSON,
 * gzip, bombs, deep nesting, extreme numbers, wrong content types and encodings), 3,000
 * mutated OTLP/gRPC messages and 1,000 malformed gRPC frames. It never crashes, answers only
 * 200 or a 4xx (gRPC: OK or a client-error code), stays within bounded memory, and stores a
 * valid request right after. Then a real worker drains everything it accepted: no batch is
 * retried as if it might succeed later (a value it cannot use fails its job at once).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import { METRICS_QUEUE_NAME, QUEUE_NAME, queueKey } from '@ccbridge/redis';
import { fuzzBodies } from '../support/fuzz-corpus';
import { payloads } from '../support/fixtures';
import { prng } from '../support/assembly';
import { GRPC_SERVICES, grpcExportClient } from '../support/otlp-grpc';
import {
  peakRssMiB,
  post,
  startBridge,
  startOkSink,
  startRedis,
  waitFor,
  type BridgePeer,
  type RedisPeer,
} from '../support/peers';

const HTTP_BODIES = Number(process.env.FUZZ_BODIES ?? 100_000);
const GRPC_MESSAGES = 3_000;
const GRPC_FRAMES = 1_000;
const LIMIT = 256 * 1024;
const SEED = Number(process.env.FUZZ_SEED ?? 20261126);

let redis: RedisPeer;
let client: Redis;
let ingest: BridgePeer;
let sink: Awaited<ReturnType<typeof startOkSink>>;

before(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
  sink = await startOkSink();
  ingest = await startBridge({
    REDIS_URL: redis.url,
    BRIDGE_ROLE: 'ingest',
    LOG_LEVEL: 'fatal',
    BRIDGE_MAX_BODY_BYTES: String(LIMIT),
    BRIDGE_QUEUE_MAX_WAITING: '10000000',
    BRIDGE_QUEUE_MAX_BYTES: '1024MiB',
  });
});
after(async () => {
  await ingest?.stop();
  client?.disconnect();
  await redis?.stop();
  await sink?.close();
});

const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

function send(url: URL, body: Buffer, contentType: string, encoding?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { 'content-length': body.length };
    if (contentType) headers['content-type'] = contentType;
    if (encoding) headers['content-encoding'] = encoding;
    const req = http.request(url, { method: 'POST', agent, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test(`${HTTP_BODIES.toLocaleString('en')} fuzzed OTLP/HTTP bodies: only 200 or a 4xx, never a crash, memory bounded`, async () => {
  const statuses = new Map<number, Map<string, number>>();
  const bodies = fuzzBodies(HTTP_BODIES, SEED, LIMIT);
  const base = new URL(ingest.url);
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      for (let next = bodies.next(); !next.done; next = bodies.next()) {
        const b = next.value;
        const status = await send(new URL(`/v1/${b.signal}`, base), b.body, b.contentType, b.encoding);
        const byKind = statuses.get(status) ?? new Map<string, number>();
        byKind.set(b.kind, (byKind.get(b.kind) ?? 0) + 1);
        statuses.set(status, byKind);
      }
    }),
  );
  const summary = Object.fromEntries([...statuses].map(([s, kinds]) => [s, Object.fromEntries(kinds)]));
  assert.equal(
    [...statuses.values()].reduce((n, kinds) => n + [...kinds.values()].reduce((a, b) => a + b, 0), 0),
    HTTP_BODIES,
  );
  assert.deepEqual(
    [...statuses.keys()].filter((s) => ![200, 400, 413, 415].includes(s)),
    [],
    JSON.stringify(summary),
  );
  for (const kind of ['valid', 'extreme numbers'])
    assert.ok((statuses.get(200)?.get(kind) ?? 0) > 0, `some ${kind} bodies are taken: ${JSON.stringify(summary)}`);
  assert.equal(statuses.get(200)?.get('gzip bomb'), undefined, 'no bomb is taken');
  assert.equal(ingest.child.exitCode, null, 'the ingest is still running');
  assert.ok(peakRssMiB(ingest.child.pid) < 300, `peak RSS ${peakRssMiB(ingest.child.pid)} MiB`);
});

test('fuzzed OTLP/gRPC messages and malformed gRPC frames: OK or a client-error code, never a crash', async () => {
  const random = prng(SEED + 1);
  const logs = payloads('protobuf', 'two-tools').find((p) => p.signal === 'logs')!.body;
  const grpcClient = grpcExportClient(`127.0.0.1:${ingest.grpcPort}`, 'logs');
  const exportOne = async (b: Buffer) => (await grpcClient.export(b)).code;
  const codes = new Map<number, number>();
  for (let n = 0; n < GRPC_MESSAGES; n++) {
    const b = Buffer.from(logs);
    for (let k = 0; k < 1 + Math.floor(random() * 3); k++)
      b[Math.floor(random() * b.length)] = Math.floor(random() * 256);
    const code = await exportOne(random() < 0.2 ? b.subarray(0, Math.floor(random() * b.length)) : b);
    codes.set(code, (codes.get(code) ?? 0) + 1);
  }
  grpcClient.close();
  assert.deepEqual(
    [...codes.keys()].filter((c) => ![grpc.status.OK, grpc.status.INVALID_ARGUMENT].includes(c)),
    [],
    JSON.stringify(Object.fromEntries(codes)),
  );

  // Frames a gRPC library would never send: a compressed flag with no compression agreed, a
  // length that runs past the data, random bytes.
  const session = http2.connect(`http://127.0.0.1:${ingest.grpcPort}`);
  const frameCodes = new Map<string, number>();
  for (let n = 0; n < GRPC_FRAMES; n++) {
    const body = Buffer.from(Array.from({ length: Math.floor(random() * 64) }, () => Math.floor(random() * 256)));
    const frame =
      n % 3 === 0
        ? body
        : Buffer.concat([
            Buffer.from([n % 3 === 1 ? 1 : 0]),
            Buffer.from([0, 0, (body.length + (n % 2) * 9) >> 8, (body.length + (n % 2) * 9) & 0xff]),
            body,
          ]);
    const code = await new Promise<string>((resolve) => {
      const req = session.request({
        ':method': 'POST',
        ':path': `/${GRPC_SERVICES.logs}/Export`,
        'content-type': 'application/grpc',
        te: 'trailers',
      });
      let status = '';
      req.on('response', (headers) => (status = String(headers['grpc-status'] ?? '')));
      req.on('trailers', (trailers: http2.IncomingHttpHeaders) => (status = String(trailers['grpc-status'] ?? status)));
      req.on('error', () => resolve('stream error'));
      req.on('close', () => resolve(status));
      req.resume();
      req.end(frame);
    });
    frameCodes.set(code, (frameCodes.get(code) ?? 0) + 1);
  }
  session.close();
  const allowed = [
    grpc.status.OK,
    grpc.status.INVALID_ARGUMENT,
    grpc.status.INTERNAL,
    grpc.status.UNIMPLEMENTED,
    grpc.status.RESOURCE_EXHAUSTED,
  ].map(String);
  assert.deepEqual(
    [...frameCodes.keys()].filter((c) => !allowed.includes(c)),
    [],
    JSON.stringify(Object.fromEntries(frameCodes)),
  );
  assert.equal(ingest.child.exitCode, null, 'the ingest is still running');
});

test('after all that, a valid request is still stored', async () => {
  const before = await client.llen(queueKey('wait'));
  const logs = payloads('protobuf', 'two-tools').find((p) => p.signal === 'logs')!.body;
  assert.equal((await post(`${ingest.url}/v1/logs`, logs, 'application/x-protobuf')).status, 200);
  assert.equal(await client.llen(queueKey('wait')), before + 1);
});

test('a worker drains every accepted batch: none is retried as if it might succeed later, none is lost', async () => {
  const queued = await client.llen(queueKey('wait'));
  assert.ok(queued > 0);
  const worker = await startBridge({
    REDIS_URL: redis.url,
    BRIDGE_ROLE: 'worker',
    LOG_LEVEL: 'fatal',
    LLMFLOW_URL: sink.url,
    BRIDGE_WORKER_CONCURRENCY: '8',
  });
  try {
    // The events' queue and the metrics' (forwarded to the sink as they would be to LLMFlow).
    for (const name of [QUEUE_NAME, METRICS_QUEUE_NAME]) {
      const key = (part: string) => queueKey(part, undefined, name);
      let retried = 0;
      const reasons = new Set<string>();
      await waitFor(
        `the queue ${name} to drain`,
        async () => {
          const delayed = await client.zrange(key('delayed'), 0, -1);
          for (const id of delayed) reasons.add(String(await client.hget(key(id), 'failedReason')));
          retried = Math.max(retried, delayed.length);
          const [waiting, active] = await Promise.all([client.llen(key('wait')), client.llen(key('active'))]);
          return waiting + active === 0;
        },
        600_000,
        50,
      );
      assert.equal(retried, 0, `${name}: no batch waited for a retry: ${[...reasons].join('; ')}`);
      const failed = await client.zrange(key('failed'), 0, -1);
      for (const id of failed) {
        const [attempts, reason] = await client.hmget(key(id), 'attemptsMade', 'failedReason');
        assert.equal(Number(attempts), 1, `${name}: job ${id} failed after ${attempts} attempts: ${reason}`);
      }
      assert.deepEqual(failed, [], `${name}: every accepted batch was processed`);
    }
    assert.equal(worker.child.exitCode, null, 'the worker is still running');
  } finally {
    await worker.stop();
  }
});
