/**
 * Starts the OpenTelemetry JS SDK for the bridge's own telemetry: a MeterProvider whose
 * Prometheus reader the caller serves at /metrics (on a port of its own), in every process; and,
 * only when the operator asks for OTLP export of the bridge's own traces or metrics (the OTEL_*
 * variables, read and guarded in @ccbridge/config's self-telemetry), `@opentelemetry/sdk-node`'s
 * NodeSDK, configured from those variables (node-sdk.ts).
 *
 * NodeSDK is loaded on demand: requiring it loads every exporter it could configure from the
 * environment (OTLP over gRPC, protobuf and JSON for traces, metrics and logs, Zipkin, the B3 and
 * Jaeger propagators, sdk-logs): about 10 MiB more per process at rest and 10–20 MiB at a worker's
 * peak (docs/BENCHMARKS.md). A process that exports nothing of its own builds its MeterProvider from
 * sdk-metrics and the Prometheus exporter alone, as before.
 *
 * The line is pinned to 0.223.0 / 2.12.0 (exactly, so one copy of each package is loaded): the
 * newest that runs on Node 20.6+ (0.30x / 3.x need Node 22.15).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { metrics } from '@opentelemetry/api';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { SERVICE_NAME } from './names';
import { recordSpans } from './tracing';

export interface TelemetryOptions {
  /** The process's role, as a resource attribute (`ccbridge.role`). */
  role: string;
  version: string;
  /** Export the bridge's own traces / metrics over OTLP, as the OTEL_* variables say (NodeSDK). */
  traces: boolean;
  metrics: boolean;
  /** OTEL_* values to lay over the environment first (what deprecated BRIDGE_* settings stand for). */
  env: Record<string, string>;
}

export interface Telemetry {
  /** Serves the Prometheus text format (GET /metrics). */
  metricsHandler(req: IncomingMessage, res: ServerResponse): void;
  shutdown(): Promise<void>;
}

export async function startTelemetry(options: TelemetryOptions): Promise<Telemetry> {
  // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, when NodeSDK runs, are laid over these.
  const resource = resourceFromAttributes({
    'service.name': SERVICE_NAME,
    'service.version': options.version,
    'ccbridge.role': options.role,
  });
  const prometheus = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true });
  let shutdown: () => Promise<void>;
  if (options.traces || options.metrics) {
    // Imported here, not above: only a process that exports its own telemetry loads NodeSDK.
    const { startNodeSdk } = await import('./node-sdk.js');
    const sdk = startNodeSdk({ ...options, resource, prometheus });
    shutdown = () => sdk.shutdown();
  } else {
    const meterProvider = new MeterProvider({ resource, readers: [prometheus] });
    metrics.setGlobalMeterProvider(meterProvider);
    shutdown = () => meterProvider.shutdown();
  }
  recordSpans(options.traces);
  return {
    metricsHandler: (req, res) => prometheus.getMetricsRequestHandler(req, res),
    shutdown,
  };
}
