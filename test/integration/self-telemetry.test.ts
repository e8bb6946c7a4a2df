/**
 * The bridge's own traces and metrics, exported by NodeSDK configured through the standard OTEL_*
 * variables alone, reach an OTLP endpoint (protobuf, the SDK's default), with the resource and
 * headers those variables say; Prometheus /metrics is served as before. And the shell of a Claude
 * Code user (CLAUDE_CODE_ENABLE_TELEMETRY, OTEL_LOGS_/METRICS_/TRACES_EXPORTER=otlp, the endpoint
 * at the bridge itself or at a Collector) never turns that export on.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeExportRequest, encodeExportRequest, type ResourceSpans } from '@ccbridge/otlp';
import { expectedSpans, logsOf } from '../support/fixtures';
import {
  freePort,
  post,
  startBridge,
  startLlmflow,
  startRedis,
  waitFor,
  type BridgePeer,
  type LlmflowPeer,
  type RedisPeer,
} from '../support/peers';
import { keepForFile, startOnFreePorts } from '../support/procs';

interface Received {
  signal: 'traces' | 'metrics';
  headers: http.IncomingHttpHeaders;
  resources: { attributes: Record<string, string>; names: string[]; scopes: string[] }[];
  /** The request's resource spans, as decoded (to send back to the bridge). */
  resourceSpans: ResourceSpans[];
}

let redis: RedisPeer;
let llmflow: LlmflowPeer;
let sink: http.Server;
let sinkUrl: string;
const received: Received[] = [];
const started: BridgePeer[] = [];

/** What a Claude Code user exports in the shell, as the README says (faster intervals, to see an export soon if one were made). */
const CLAUDE_CODE_SHELL = {
  CLAUDE_CODE_ENABLE_TELEMETRY: '1',
  OTEL_LOGS_EXPORTER: 'otlp',
  OTEL_METRICS_EXPORTER: 'otlp',
  OTEL_TRACES_EXPORTER: 'otlp',
  OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
  OTEL_LOGS_EXPORT_INTERVAL: '200',
  OTEL_METRIC_EXPORT_INTERVAL: '200',
  OTEL_BSP_SCHEDULE_DELAY: '100',
};

function decoded(signal: Received['signal'], body: Buffer): Pick<Received, 'resources' | 'resourceSpans'> {
  const attributesOf = (attrs: { key: string; value?: { stringValue?: string } }[] = []) =>
    Object.fromEntries(attrs.map((a) => [a.key, a.value?.stringValue ?? '']));
  if (signal === 'traces') {
    const resourceSpans = decodeExportRequest('traces', body, 'protobuf').resourceSpans ?? [];
    return {
      resourceSpans,
      resources: resourceSpans.map((rs) => ({
        attributes: attributesOf(rs.resource?.attributes),
        names: (rs.scopeSpans ?? []).flatMap((ss) => (ss.spans ?? []).map((s) => s.name)),
        scopes: (rs.scopeSpans ?? []).map((ss) => ss.scope?.name ?? ''),
      })),
    };
  }
  const resourceMetrics = decodeExportRequest('metrics', body, 'protobuf').resourceMetrics ?? [];
  return {
    resourceSpans: [],
    resources: resourceMetrics.map((rm) => ({
      attributes: attributesOf(rm.resource?.attributes),
      names: (rm.scopeMetrics ?? []).flatMap((sm) => ((sm.metrics ?? []) as { name: string }[]).map((m) => m.name)),
      scopes: (rm.scopeMetrics ?? []).map((sm) => sm.scope?.name ?? ''),
    })),
  };
}

before(async () => {
  sink = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const signal = req.url === '/v1/traces' ? 'traces' : req.url === '/v1/metrics' ? 'metrics' : undefined;
      if (signal && req.headers['content-type'] === 'application/x-protobuf') {
        received.push({ signal, headers: req.headers, ...decoded(signal, Buffer.concat(chunks)) });
        res.writeHead(200, { 'content-type': 'application/x-protobuf' });
      } else {
        res.writeHead(404);
      }
      res.end();
    });
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  sinkUrl = `http://127.0.0.1:${(sink.address() as AddressInfo).port}`;
  [redis, llmflow] = await Promise.all([startRedis(), startLlmflow()]);
});
after(async () => {
  await Promise.all(started.map((b) => b.stop()));
  await Promise.all([llmflow?.stop(), redis?.stop()]);
  await new Promise<void>((r) => sink.close(() => r()));
});

async function bridge(env: Record<string, string>): Promise<BridgePeer> {
  const b = await startBridge({ REDIS_URL: redis.url, LLMFLOW_URL: llmflow.url, ...env });
  started.push(b);
  return b;
}

const fromService = (name: string, signal: Received['signal']) =>
  received
    .filter((r) => r.signal === signal)
    .flatMap((r) =>
      r.resources
        .filter((res) => res.attributes['service.name'] === name)
        .map((res) => ({ ...res, headers: r.headers })),
    );

/** The bridge configured by OTEL_* alone; the next test uses it too, as the export that does happen. */
let own: BridgePeer;
const OWN_NAME = 'ccbridge-otel-test';

test("the bridge's own spans and metrics reach an OTLP endpoint configured only through OTEL_* variables; /metrics stays", async () => {
  // Kept for the file (not stopped with this test): the next test uses it as its clock.
  own = keepForFile(
    await bridge({
      OTEL_TRACES_EXPORTER: 'otlp',
      OTEL_METRICS_EXPORTER: 'otlp',
      OTEL_EXPORTER_OTLP_ENDPOINT: sinkUrl,
      OTEL_EXPORTER_OTLP_HEADERS: 'x-ccbridge-test=through-otel-headers',
      OTEL_SERVICE_NAME: OWN_NAME,
      OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=otel-test',
      OTEL_TRACES_SAMPLER: 'parentbased_always_on',
      OTEL_BSP_SCHEDULE_DELAY: '100',
      OTEL_METRIC_EXPORT_INTERVAL: '200',
    }),
  );
  const before = (await llmflow.listed()).length;
  const body = encodeExportRequest('logs', logsOf('protobuf', 'two-tools'), 'protobuf');
  assert.equal((await post(`${own.url}/v1/logs`, body, 'application/x-protobuf')).status, 200);
  await waitFor(
    'the turn in LLMFlow',
    async () => (await llmflow.listed()).length >= before + expectedSpans('protobuf', 'two-tools').total,
  );

  const spans = await waitFor("the bridge's own spans at the endpoint", () => {
    const names = new Set(fromService(OWN_NAME, 'traces').flatMap((r) => r.names));
    return ['ccbridge.receive', 'ccbridge.enqueue', 'ccbridge.process', 'ccbridge.export'].every((n) => names.has(n))
      ? fromService(OWN_NAME, 'traces')
      : undefined;
  });
  assert.equal(spans[0]!.attributes['deployment.environment.name'], 'otel-test', 'OTEL_RESOURCE_ATTRIBUTES');
  assert.equal(spans[0]!.attributes['ccbridge.role'], 'all');
  assert.equal(spans[0]!.headers['x-ccbridge-test'], 'through-otel-headers', 'OTEL_EXPORTER_OTLP_HEADERS');
  const metrics = await waitFor("the bridge's own metrics at the endpoint", () => {
    const names = new Set(fromService(OWN_NAME, 'metrics').flatMap((r) => r.names));
    return names.has('ccbridge_receiver_accepted_log_records') && names.has('ccbridge_exporter_sent_spans')
      ? names
      : undefined;
  });
  assert.ok(metrics.has('ccbridge_queue_size'), [...metrics].join(', '));

  const scrape = await (await fetch(`${own.adminUrl}/metrics`)).text();
  assert.match(
    scrape,
    /^ccbridge_receiver_accepted_log_records_total\{transport="http"\} \d+/m,
    'Prometheus /metrics as before',
  );
  assert.match(own.output(), /"selfTraces":"http:\/\/127\.0\.0\.1:\d+\/v1\/traces"/);

  // Its own spans sent back to its receiver are not forwarded, whatever OTEL_SERVICE_NAME called it.
  const mine = received.filter(
    (r) => r.signal === 'traces' && r.resources.some((res) => res.attributes['service.name'] === OWN_NAME),
  );
  const back = encodeExportRequest('traces', { resourceSpans: mine.flatMap((r) => r.resourceSpans) }, 'protobuf');
  assert.equal((await post(`${own.url}/v1/traces`, back, 'application/x-protobuf')).status, 200);
  const later = (await llmflow.listed()).length;
  assert.equal(
    (await post(`${own.url}/v1/logs`, Buffer.from(JSON.stringify(logsOf('json', 'simple'))), 'application/json'))
      .status,
    200,
  );
  await waitFor('the later batch in LLMFlow', async () => (await llmflow.listed()).length > later);
  const names = (await llmflow.spans()).map((s) => s.span_name);
  assert.ok(!names.some((n) => n.startsWith('ccbridge.')), names.filter((n) => n.startsWith('ccbridge.')).join(', '));
});

test("a Claude Code user's shell turns no export on, the endpoint at the bridge itself or at a Collector", async () => {
  // This bridge's endpoint is its own receiver, so its port is chosen before it starts (and
  // chosen again should another process take it first).
  const itself = await startOnFreePorts(async () => {
    const port = await freePort();
    return bridge({
      ...CLAUDE_CODE_SHELL,
      OTLP_HTTP_PORT: String(port),
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
    });
  });
  const viaCollector = await bridge({ ...CLAUDE_CODE_SHELL, OTEL_EXPORTER_OTLP_ENDPOINT: sinkUrl });
  const before = (await llmflow.listed()).length;
  assert.equal(
    (await post(`${itself.url}/v1/logs`, Buffer.from(JSON.stringify(logsOf('json', 'tool'))), 'application/json'))
      .status,
    200,
  );
  assert.equal(
    (
      await post(
        `${viaCollector.url}/v1/logs`,
        encodeExportRequest('logs', logsOf('protobuf', 'simple'), 'protobuf'),
        'application/x-protobuf',
      )
    ).status,
    200,
  );
  await waitFor(
    'both turns in LLMFlow',
    async () =>
      (await llmflow.listed()).length >=
      before + expectedSpans('json', 'tool').total + expectedSpans('protobuf', 'simple').total,
  );

  // The bridge configured for export (previous test) sends its metrics every 200 ms, as these two
  // would: once it has sent twice more, these had that long to send theirs.
  const sent = fromService(OWN_NAME, 'metrics').length;
  await waitFor(
    'two more exports of the bridge that does export',
    () => fromService(OWN_NAME, 'metrics').length >= sent + 2,
  );
  const strays = received.flatMap((r) => r.resources).filter((res) => res.attributes['service.name'] !== OWN_NAME);
  assert.deepEqual(
    strays.map((s) => s.attributes['service.name']),
    [],
    'nothing from the Claude Code shell bridges',
  );
  const scrape = await (await fetch(`${itself.adminUrl}/metrics`)).text();
  assert.doesNotMatch(
    scrape,
    /ccbridge_receiver_accepted_(spans|metric_points)_total/,
    'nothing of its own came back to its receiver',
  );
  for (const b of [itself, viaCollector]) {
    assert.match(b.output(), /"selfTraces":"off","selfMetrics":"off"/);
    assert.match(b.output(), /OTEL_TRACES_EXPORTER=otlp is set aside: with CLAUDE_CODE_ENABLE_TELEMETRY=1/);
    assert.match(b.output(), /OTEL_METRICS_EXPORTER=otlp is set aside/);
  }
});
