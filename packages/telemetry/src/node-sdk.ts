/**
 * The bridge's own OTLP export, set up by `@opentelemetry/sdk-node`'s NodeSDK from the standard
 * OTEL_* variables: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (laid over the bridge's own
 * resource), OTEL_EXPORTER_OTLP_{,TRACES_,METRICS_}{ENDPOINT,PROTOCOL,HEADERS,TIMEOUT,COMPRESSION},
 * OTEL_TRACES_SAMPLER(_ARG), OTEL_BSP_*, OTEL_METRIC_EXPORT_{INTERVAL,TIMEOUT}, OTEL_LOG_LEVEL.
 * Loaded only by sdk.ts when a signal is to be exported (@ccbridge/config decided which).
 *
 * What is the bridge's, not the environment's: the Prometheus reader (/metrics) is always one of
 * the readers; traces are made only when asked for (NodeSDK's default would be otlp); no logs are
 * exported (the bridge has none; an OTEL_LOGS_EXPORTER around it is a client's); the propagator is
 * W3C trace context, the form in which a queue job carries its trace from the ingest to the worker.
 *
 * The trace exporter is built here, not by NodeSDK from OTEL_TRACES_EXPORTER: OTLP/HTTP JSON
 * (OTEL_EXPORTER_OTLP{,_TRACES}_PROTOCOL=http/json, and what BRIDGE_SELF_TRACES_URL stands for) is
 * `@opentelemetry/exporter-trace-otlp-http`'s OTLPTraceExporter, a dependency of this package; the
 * other two protocols (http/protobuf, the default, and grpc) are the exporters NodeSDK picks for them.
 * Either way NodeSDK wraps it in its batch span processor, configured by OTEL_BSP_*.
 */
import { NodeSDK, type NodeSDKConfiguration } from '@opentelemetry/sdk-node';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import { defaultResource } from '@opentelemetry/resources';
import type { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import type { IMetricReader } from '@opentelemetry/sdk-metrics';
// NodeSDK takes either the metric readers it is given or those of OTEL_METRICS_EXPORTER, never
// both; the Prometheus reader is always given, so the OTLP one is built with the helpers NodeSDK
// itself uses for OTEL_METRICS_EXPORTER=otlp (not in its index; the version is pinned exactly).
import {
  getOtlpMetricExporterFromEnv,
  getOtlpProtocolFromEnv,
  getPeriodicExportingMetricReaderFromEnv,
} from '@opentelemetry/sdk-node/build/src/utils';

export interface NodeSdkOptions {
  traces: boolean;
  metrics: boolean;
  env: Record<string, string>;
  resource: Resource;
  prometheus: PrometheusExporter;
}

export function startNodeSdk(options: NodeSdkOptions): NodeSDK {
  // The deprecated BRIDGE_* settings, as the OTEL_* values they stand for, read by the SDK below.
  Object.assign(process.env, options.env);
  const readers: IMetricReader[] = [options.prometheus];
  if (options.metrics) readers.push(getPeriodicExportingMetricReaderFromEnv(getOtlpMetricExporterFromEnv()));
  const sdk = new NodeSDK({
    resource: defaultResource().merge(options.resource),
    metricReaders: readers,
    ...traceExport(options.traces),
    logRecordProcessors: [],
    textMapPropagator: new W3CTraceContextPropagator(),
  });
  sdk.start();
  return sdk;
}

/** How NodeSDK exports traces: not at all; over OTLP/HTTP JSON with the exporter given here; else as NodeSDK picks for the protocol. */
function traceExport(traces: boolean): Partial<NodeSDKConfiguration> {
  if (!traces) return { spanProcessors: [] };
  // The protocol as NodeSDK reads it (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, then OTEL_EXPORTER_OTLP_PROTOCOL).
  if (getOtlpProtocolFromEnv() === 'http/json') return { traceExporter: new OTLPTraceExporter() };
  return {}; // NodeSDK builds it from OTEL_TRACES_EXPORTER=otlp, as before
}
