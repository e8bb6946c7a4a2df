/**
 * What a process loads for its own telemetry: by default sdk-metrics and the Prometheus exporter
 * only; NodeSDK (and the exporters it brings) only when the bridge exports its own telemetry over
 * OTLP. Each case runs in a fresh process, so nothing another test loaded counts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';

/** The @opentelemetry packages a fresh process has loaded once startTelemetry has run with these options. */
function packagesLoaded(options: { traces: boolean; metrics: boolean }): string[] {
  const script = `
    const { startTelemetry } = require('@ccbridge/telemetry/sdk');
    const env = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9' };
    startTelemetry({ role: 'all', version: '0', env, ...${JSON.stringify(options)} }).then(async (t) => {
      const names = Object.keys(require.cache).map((f) => /node_modules\\/(@opentelemetry\\/[^/]+)/.exec(f)?.[1]).filter(Boolean);
      process.stdout.write(JSON.stringify([...new Set(names)]));
      await t.shutdown();
    });`;
  return JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' })) as string[];
}

test('a process that exports nothing of its own loads no NodeSDK and no OTLP exporter', () => {
  const loaded = packagesLoaded({ traces: false, metrics: false });
  assert.ok(loaded.includes('@opentelemetry/exporter-prometheus'), loaded.join(', '));
  const heavy = loaded.filter((p) => /sdk-node|sdk-trace|sdk-logs|otlp|zipkin|propagator/.test(p));
  assert.deepEqual(heavy, []);
});

test('a process that exports its own traces loads NodeSDK', () => {
  const loaded = packagesLoaded({ traces: true, metrics: false });
  assert.ok(loaded.includes('@opentelemetry/sdk-node'), loaded.join(', '));
});
