/**
 * The shipped otel-collector.yaml in a real OpenTelemetry Collector (built from the official
 * modules by test/collector/build.sh), in front of the bridge and a real LLMFlow: every
 * protocol in, protobuf + gzip to the bridge, metrics to Prometheus, and nothing lost while
 * the bridge is down.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ExportLogsRequest } from '@ccbridge/otlp';
import { SCENARIOS, expectedSpans, payloads } from '../support/fixtures';
import {
  SECOND_CONFIG,
  SHIPPED_CONFIG,
  startCollector,
  validateConfig,
  type CollectorPeer,
} from '../support/collector';
import { exportGrpc } from '../support/otlp-grpc';
import { startRelay, type Relay } from '../support/relay';
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
let bridge: BridgePeer;
let collector: CollectorPeer;
/** The Collector sends to this relay, which stays while the bridge behind it is stopped and started again. */
let relay: Relay;

before(async () => {
  [redis, llmflow] = await Promise.all([startRedis(), startLlmflow()]);
  bridge = await startBridge({ REDIS_URL: redis.url, LLMFLOW_URL: llmflow.url, BRIDGE_INTERACTION_IDLE_MS: '400' });
  relay = await startRelay(`127.0.0.1:${bridge.port}`);
  collector = await startCollector({ bridgeUrl: relay.url });
});
after(async () => {
  await collector?.stop();
  await relay?.stop();
  await bridge?.stop();
  await Promise.all([llmflow?.stop(), redis?.stop()]);
});

test('otelcol validate accepts the shipped config, alone and with the second destination', () => {
  assert.deepEqual(validateConfig([SHIPPED_CONFIG]), { code: 0, output: '' });
  const second = validateConfig([SHIPPED_CONFIG, SECOND_CONFIG], {
    SECOND_OTLP_ENDPOINT: 'https://otlp.example.com',
    SECOND_OTLP_HEADERS: '{"x-api-key": "k"}',
  });
  assert.equal(second.code, 0, second.output);
  const missing = validateConfig([SHIPPED_CONFIG, SECOND_CONFIG], { SECOND_OTLP_ENDPOINT: '' });
  assert.notEqual(missing.code, 0, 'a second destination without an endpoint is refused');
});

/** Waits until LLMFlow holds the whole trace of a capture's prompt, and returns its spans. */
async function traceOfPrompt(promptId: string, want: number) {
  return waitFor(
    `the trace of prompt ${promptId}`,
    async () => {
      const spans = (await llmflow.spans()).filter(
        (s) => (JSON.parse(s.attributes) as Record<string, unknown>)['prompt.id'] === promptId,
      );
      const traceIds = new Set(spans.map((s) => s.trace_id));
      if (traceIds.size !== 1) return undefined;
      const trace = (await llmflow.listed()).filter((s) => traceIds.has(s.trace_id));
      return trace.length >= want ? trace : undefined;
    },
    60_000,
  );
}

function promptIdIn(body: Buffer): string {
  return /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/.exec(
    body.toString('latin1').split('prompt.id')[1] ?? '',
  )![0];
}

/** The first prompt.id among the first scope's log records of an OTLP/JSON logs body. */
function promptIdInJson(body: Buffer): string {
  const request = JSON.parse(body.toString()) as ExportLogsRequest;
  return request
    .resourceLogs![0]!.scopeLogs![0]!.logRecords!.map(
      (r) => r.attributes!.find((a) => a.key === 'prompt.id')?.value!.stringValue,
    )
    .find(Boolean)!;
}

test('OTLP/HTTP protobuf and JSON, and OTLP/gRPC, through the Collector reach LLMFlow as traces', async () => {
  const cases = [
    { scenario: SCENARIOS[0], via: 'http/protobuf' },
    { scenario: SCENARIOS[1], via: 'http/json' },
    { scenario: SCENARIOS[2], via: 'grpc' },
  ] as const;
  for (const { scenario, via } of cases) {
    const capture = via === 'http/json' ? 'json' : 'protobuf';
    for (const p of payloads(capture, scenario)) {
      if (via === 'grpc') {
        assert.equal((await exportGrpc(collector.grpcAddress, p.signal, p.body)).code, 0);
      } else {
        assert.equal(
          (
            await post(
              `${collector.httpUrl}/v1/${p.signal}`,
              p.body,
              p.format === 'json' ? 'application/json' : 'application/x-protobuf',
            )
          ).status,
          200,
        );
      }
    }
    const logs = payloads(capture, scenario).find((p) => p.signal === 'logs')!;
    const id = capture === 'json' ? promptIdInJson(logs.body) : promptIdIn(logs.body);
    const trace = await traceOfPrompt(id, expectedSpans(capture, scenario).total);
    assert.equal(trace.length, expectedSpans(capture, scenario).total, `${via}: the whole trace, once`);
  }
  assert.match(bridge.output(), /"msg":"accepted a batch"/);
});

test("Claude Code's metrics are served to Prometheus", async () => {
  for (const p of payloads('protobuf', 'tool').filter((x) => x.signal === 'metrics')) {
    assert.equal((await post(`${collector.httpUrl}/v1/metrics`, p.body, 'application/x-protobuf')).status, 200);
  }
  const text = await waitFor('Claude Code metrics on the Prometheus endpoint', async () => {
    const body = await (await fetch(collector.prometheusUrl)).text();
    return body.includes('claude_code_') ? body : undefined;
  });
  assert.match(text, /claude_code_token_usage/);
});

test('while the bridge is down the Collector keeps the data, and delivers it when the bridge is back', async () => {
  await bridge.stop();
  relay.target = undefined;
  const p = payloads('json', 'simple').find((x) => x.signal === 'logs')!;
  const body = Buffer.from(
    p.body.toString().replaceAll('"prompt.id","value":{"stringValue":"', '"prompt.id","value":{"stringValue":"outage-'),
  );
  assert.equal((await post(`${collector.httpUrl}/v1/logs`, body, 'application/json')).status, 200);
  const promptId = `outage-${promptIdInJson(p.body)}`;
  bridge = await startBridge({ REDIS_URL: redis.url, LLMFLOW_URL: llmflow.url, BRIDGE_INTERACTION_IDLE_MS: '400' });
  relay.target = `127.0.0.1:${bridge.port}`;
  const trace = await traceOfPrompt(promptId, expectedSpans('json', 'simple').total);
  assert.equal(trace.length, expectedSpans('json', 'simple').total);
});

test('with BRIDGE_AUTH_TOKEN set, the shipped config sends the token the bridge asks for', async () => {
  const token = 'collector-token-0123456789';
  const guarded = await startBridge({ REDIS_URL: redis.url, LLMFLOW_URL: llmflow.url, BRIDGE_AUTH_TOKENS: token });
  const sender = await startCollector({ bridgeUrl: guarded.url, env: { BRIDGE_AUTH_TOKEN: token } });
  try {
    const scenario = SCENARIOS[0];
    for (const p of payloads('protobuf', scenario)) {
      assert.equal((await post(`${sender.httpUrl}/v1/${p.signal}`, p.body, 'application/x-protobuf')).status, 200);
    }
    await waitFor('the batch at the guarded bridge', () => /"msg":"accepted a batch"/.test(guarded.output()));
    const metrics = await (await fetch(`${guarded.adminUrl}/metrics`)).text();
    assert.match(metrics, /ccbridge_receiver_accepted_log_records_total\{transport="http"\} [1-9]/);
    assert.doesNotMatch(metrics, /reason="auth"/, 'no request was refused for its token');
  } finally {
    await sender.stop();
    await guarded.stop();
  }
});
