/**
 * Starts the OpenTelemetry JS SDK (@opentelemetry/sdk-node) for the bridge's own telemetry:
 * metrics for Prometheus (served by the caller at /metrics, on a port of its own), optionally
 * pushed over OTLP too; traces of its own work only when an endpoint is given. Nothing is read
 * from OTEL_* exporter variables: an SDK left to its defaults would send traces, metrics and
 * logs to localhost:4318, which may be this very bridge (a loop).
 *
 * The line is pinned to 0.223.x / 2.12.x: the newest that runs on Node 20.6+ (0.30x / 3.x need
 * Node 22.15).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { NodeSDK, metrics as sdkMetrics, resources, tracing } from '@opentelemetry/sdk-node';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';

import { SERVICE_NAME } from './names';
import { recordSpans } from './tracing';

export interface TelemetryOptions {
  /** The process's role, as a resource attribute (`ccbridge.role`). */
  role: string;
  version: string;
  /** OTLP/HTTP metrics endpoint (full URL, `…/v1/metrics`) to push to as well, every `intervalMs`. */
  metricsOtlpUrl?: string;
  metricsIntervalMs?: number;
  /** OTLP/HTTP traces endpoint (full URL, `…/v1/traces`) for traces of the bridge's own work; none: no traces. */
  selfTracesUrl?: string;
}

export interface Telemetry {
  /** Serves the Prometheus text format (GET /metrics). */
  metricsHandler(req: IncomingMessage, res: ServerResponse): void;
  shutdown(): Promise<void>;
}

export function startTelemetry(options: TelemetryOptions): Telemetry {
  const prometheus = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true });
  const readers: sdkMetrics.MetricReader[] = [prometheus];
  if (options.metricsOtlpUrl) {
    readers.push(new sdkMetrics.PeriodicExportingMetricReader({
      exporter: new OTLPMetricExporter({ url: options.metricsOtlpUrl }),
      exportIntervalMillis: options.metricsIntervalMs ?? 60_000,
    }));
  }
  const spanProcessors = options.selfTracesUrl ? [new tracing.BatchSpanProcessor(new OTLPTraceExporter({ url: options.selfTracesUrl }))] : [];
  const sdk = new NodeSDK({
    resource: resources.resourceFromAttributes({ 'service.name': SERVICE_NAME, 'service.version': options.version, 'ccbridge.role': options.role }),
    metricReaders: readers,
    // Explicit, even when empty: no span processor or log exporter is taken from OTEL_* defaults.
    spanProcessors,
    logRecordProcessors: [],
    instrumentations: [],
  });
  sdk.start();
  recordSpans(spanProcessors.length > 0);
  return {
    metricsHandler: (req, res) => prometheus.getMetricsRequestHandler(req, res),
    shutdown: () => sdk.shutdown(),
  };
}
