/**
 * Starts the OpenTelemetry JS SDK for the bridge's own telemetry: a MeterProvider whose
 * Prometheus reader the caller serves at /metrics (on a port of its own), optionally pushed over
 * OTLP too; a TracerProvider for traces of its own work only when an endpoint is given (then the
 * W3C propagator and the AsyncLocalStorage context manager as well). Nothing is read from OTEL_*
 * exporter variables: an SDK left to its defaults would send traces, metrics and logs to
 * localhost:4318, which may be this very bridge (a loop).
 *
 * Built from the SDK's own components (sdk-metrics, sdk-trace-base, context-async-hooks, core),
 * as `@opentelemetry/sdk-node`'s NodeSDK composes them, rather than with NodeSDK itself: NodeSDK
 * loads at require time every exporter it could configure from the environment (OTLP over gRPC,
 * protobuf and JSON for traces, metrics and logs, Zipkin, the B3 and Jaeger propagators, sdk-logs),
 * which the bridge never uses: 39 MB more per process at rest and 40 MB more at a worker's peak
 * (docs/BENCHMARKS.md), past the 200 MB a role may take.
 *
 * The line is pinned to 0.223.0 / 2.12.0 (exactly, so one copy of each package is loaded): the
 * newest that runs on Node 20.6+ (0.30x / 3.x need Node 22.15).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { context, metrics, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { MeterProvider, PeriodicExportingMetricReader, type MetricReader } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { SERVICE_NAME } from './names';
import { recordSpans } from './tracing';

export interface TelemetryOptions {
  /** The process's role, as a resource attribute (`ccbridge.role`). */
  role: string;
  version: string;
  /** OTLP/HTTP metrics endpoint (full URL, `…/v1/metrics`) to push to as well, every `metricsIntervalMs`. */
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
  const resource = resourceFromAttributes({ 'service.name': SERVICE_NAME, 'service.version': options.version, 'ccbridge.role': options.role });
  const prometheus = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true });
  const readers: MetricReader[] = [prometheus];
  if (options.metricsOtlpUrl) {
    readers.push(new PeriodicExportingMetricReader({ exporter: new OTLPMetricExporter({ url: options.metricsOtlpUrl }), exportIntervalMillis: options.metricsIntervalMs ?? 60_000 }));
  }
  const meterProvider = new MeterProvider({ resource, readers });
  metrics.setGlobalMeterProvider(meterProvider);
  let tracerProvider: BasicTracerProvider | undefined;
  if (options.selfTracesUrl) {
    tracerProvider = new BasicTracerProvider({ resource, spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: options.selfTracesUrl }))] });
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    trace.setGlobalTracerProvider(tracerProvider);
  }
  recordSpans(!!tracerProvider);
  return {
    metricsHandler: (req, res) => prometheus.getMetricsRequestHandler(req, res),
    shutdown: async () => {
      await Promise.all([meterProvider.shutdown(), tracerProvider?.shutdown()]);
    },
  };
}
