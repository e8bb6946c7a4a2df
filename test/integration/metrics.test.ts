/**
 * The bridge's own metrics after a real run: a bridge (ingest and worker) takes a Claude Code
 * capture into a real LLMFlow, refuses two bad requests, is scraped at /metrics on its own port,
 * and shows the counts that run caused (and no more).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import { encodeExportRequest } from '@ccbridge/otlp';
import { eventCounts, expectedSpans, logsOf } from '../support/fixtures';
import { post, waitFor } from '../support/peers';
import { useBridgeStack } from '../support/per-file';

const peers = useBridgeStack();

/** The samples of a Prometheus text exposition, by name with labels as written. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

test('a scrape after a real run shows what it caused: records accepted, requests refused by reason, events by name, spans sent, the root drawn, the queue empty', async () => {
  const request = logsOf('protobuf', 'two-tools');
  const records = [...eventCounts(request).values()].reduce((a, b) => a + b, 0);
  const body = zlib.gzipSync(encodeExportRequest('logs', request, 'protobuf'));
  assert.equal(
    (await post(`${peers.bridge.url}/v1/logs`, body, 'application/x-protobuf', { 'content-encoding': 'gzip' })).status,
    200,
  );
  assert.equal(
    (await post(`${peers.bridge.url}/v1/logs`, Buffer.from([0x0a, 0xff, 0xff]), 'application/x-protobuf')).status,
    400,
  );
  assert.equal((await post(`${peers.bridge.url}/v1/logs`, Buffer.from('x'), 'text/plain')).status, 415);
  const spans = expectedSpans('protobuf', 'two-tools').total;
  await waitFor('every span in LLMFlow', async () => (await peers.llmflow.listed()).length >= spans);

  // The root is settled, and the job done with (its bytes leave the count once BullMQ says so).
  const metrics = await waitFor('the root drawn and the queue empty', async () => {
    const m = samples(await (await fetch(`${peers.bridge.adminUrl}/metrics`)).text());
    return m.get('ccbridge_interactions_drawn_total{complete="true"}') === 1 && m.get('ccbridge_queue_size_bytes') === 0
      ? m
      : undefined;
  });
  assert.equal(metrics.get('ccbridge_receiver_accepted_log_records_total{transport="http"}'), records);
  assert.equal(metrics.get('ccbridge_receiver_refused_requests_total{transport="http",reason="decode"}'), 1);
  assert.equal(metrics.get('ccbridge_receiver_refused_requests_total{transport="http",reason="unsupported"}'), 1);
  for (const [name, n] of eventCounts(request)) {
    assert.equal(
      metrics.get(`ccbridge_processor_events_total{event_name="${name.replace('claude_code.', '')}"}`),
      n,
      name,
    );
  }
  assert.equal(metrics.get('ccbridge_exporter_sent_spans_total'), spans);
  assert.equal(metrics.get('ccbridge_interactions_drawn_total{complete="false"}'), undefined, 'none incomplete');
  assert.ok((metrics.get('ccbridge_exporter_request_duration_seconds_count{outcome="ok"}') ?? 0) >= 1);
  assert.equal(metrics.get('ccbridge_queue_size'), 0);
  assert.equal(metrics.get('ccbridge_queue_capacity_bytes'), 256 * 1024 * 1024);
  assert.equal(metrics.get('ccbridge_interactions_open'), 0);
  assert.equal(metrics.get('ccbridge_worker_pauses_total'), undefined, 'LLMFlow was there throughout');
});
