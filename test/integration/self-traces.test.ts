/**
 * Traces of the bridge's own work, from an ingest and a worker running as separate processes:
 * a real batch's receive → enqueue (ingest) → process → export (worker) arrive at a test OTLP
 * endpoint as one trace, the job carrying it through Redis. The bridge's own spans, sent back to
 * its receiver, are not forwarded to LLMFlow (no loop).
 */
import type { AddressInfo } from 'node:net';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import zlib from 'node:zlib';
import { encodeExportRequest, type ResourceSpans, type Span } from '@ccbridge/otlp';
import { expectedSpans, logsOf } from '../support/fixtures';
import {
  post,
  startBridge,
  startLlmflow,
  startRedis,
  waitFor,
  type BridgePeer,
  type LlmflowPeer,
  type RedisPeer,
} from '../support/peers';

let redis: RedisPeer;
let llmflow: LlmflowPeer;
let ingest: BridgePeer;
let worker: BridgePeer;
let endpoint: http.Server;
const received: ResourceSpans[] = [];

before(async () => {
  endpoint = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push(
        ...((JSON.parse(Buffer.concat(chunks).toString('utf8')) as { resourceSpans?: ResourceSpans[] }).resourceSpans ??
          []),
      );
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((r) => endpoint.listen(0, '127.0.0.1', r));
  const { port } = endpoint.address() as AddressInfo;
  [redis, llmflow] = await Promise.all([startRedis(), startLlmflow()]);
  const common = {
    REDIS_URL: redis.url,
    LLMFLOW_URL: llmflow.url,
    BRIDGE_SELF_TRACES_URL: `http://127.0.0.1:${port}/v1/traces`,
    OTEL_BSP_SCHEDULE_DELAY: '100',
  };
  ingest = await startBridge({ ...common, BRIDGE_ROLE: 'ingest' });
  worker = await startBridge({ ...common, BRIDGE_ROLE: 'worker' });
});
after(async () => {
  await Promise.all([ingest?.stop(), worker?.stop()]);
  await Promise.all([llmflow?.stop(), redis?.stop()]);
  await new Promise<void>((r) => endpoint.close(() => r()));
});

interface Drawn extends Span {
  role: string;
}
const spansOf = (list: ResourceSpans[]): Drawn[] =>
  list.flatMap((rs) => {
    const role = rs.resource?.attributes?.find((a) => a.key === 'ccbridge.role')?.value?.stringValue ?? '';
    return (rs.scopeSpans ?? []).flatMap((ss) => (ss.spans ?? []).map((s) => ({ ...s, role })));
  });

test('a batch is one trace across the ingest and the worker: receive → enqueue → process → export', async () => {
  const body = zlib.gzipSync(encodeExportRequest('logs', logsOf('protobuf', 'two-tools'), 'protobuf'));
  assert.equal(
    (await post(`${ingest.url}/v1/logs`, body, 'application/x-protobuf', { 'content-encoding': 'gzip' })).status,
    200,
  );
  await waitFor(
    'the turn in LLMFlow',
    async () => (await llmflow.listed()).length >= expectedSpans('protobuf', 'two-tools').total,
  );
  const spans = await waitFor("the bridge's own spans", () => {
    const all = spansOf(received);
    const names = new Set(all.map((s) => s.name));
    return ['ccbridge.receive', 'ccbridge.enqueue', 'ccbridge.process', 'ccbridge.export'].every((n) => names.has(n))
      ? all
      : undefined;
  });
  const one = (name: string) => {
    const found = spans.filter((s) => s.name === name);
    assert.equal(found.length, 1, name);
    return found[0]!;
  };
  const [receive, enqueue, processing] = ['ccbridge.receive', 'ccbridge.enqueue', 'ccbridge.process'].map(one) as [
    Drawn,
    Drawn,
    Drawn,
  ];
  // One export per request to LLMFlow: the turn's spans may go in more than one (its root once
  // its end is decided), so each is checked, not counted.
  const exports = spans.filter((s) => s.name === 'ccbridge.export');
  for (const exporting of exports) {
    assert.equal(exporting.parentSpanId, processing.spanId);
    assert.equal(exporting.role, 'worker');
  }
  assert.equal(new Set([receive, enqueue, processing, ...exports].map((s) => s.traceId)).size, 1, 'one trace');
  assert.deepEqual([receive.role, enqueue.role, processing.role], ['ingest', 'ingest', 'worker']);
  assert.equal(receive.parentSpanId || undefined, undefined, 'the receive span starts the trace');
  assert.equal(enqueue.parentSpanId, receive.spanId);
  assert.equal(processing.parentSpanId, enqueue.spanId, 'the job carried the trace through Redis');
  assert.equal(Number(receive.attributes?.find((a) => a.key === 'ccbridge.items')?.value?.intValue), 13);
  // BRIDGE_SELF_TRACES_URL, which these bridges are started with, is a deprecated alias now.
  assert.match(
    ingest.output(),
    /BRIDGE_SELF_TRACES_URL is deprecated: set OTEL_TRACES_EXPORTER=otlp and OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=/,
  );
});

test("the bridge's own spans sent to its receiver are not forwarded to LLMFlow", async () => {
  const before = (await llmflow.listed()).length;
  const own = received.filter((rs) => spansOf([rs]).some((s) => s.name.startsWith('ccbridge.')));
  assert.ok(own.length > 0);
  const marker = logsOf('json', 'simple');
  assert.equal(
    (await post(`${ingest.url}/v1/traces`, Buffer.from(JSON.stringify({ resourceSpans: own })), 'application/json'))
      .status,
    200,
  );
  // Something after them, to know the worker got past them.
  assert.equal(
    (await post(`${ingest.url}/v1/logs`, Buffer.from(JSON.stringify(marker)), 'application/json')).status,
    200,
  );
  await waitFor('the later batch in LLMFlow', async () => (await llmflow.listed()).length > before);
  const names = (await llmflow.spans()).map((s) => s.span_name);
  assert.ok(!names.some((n) => n.startsWith('ccbridge.')), names.filter((n) => n.startsWith('ccbridge.')).join(', '));
});
