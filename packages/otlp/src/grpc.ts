/**
 * OTLP over gRPC, as bytes: each signal's collector service (opentelemetry-proto's
 * `collector/<signal>/v1/*_service.proto`) and its one method, Export, with requests and answers
 * passed through as encoded protobuf (codec.ts decodes and encodes them). The receiver and every
 * client of the bridge use this one definition; it is structurally a @grpc/grpc-js
 * MethodDefinition, so this package needs no gRPC library.
 */
import type { Signal } from './types';

export const GRPC_SERVICES: Record<Signal, string> = {
  logs: 'opentelemetry.proto.collector.logs.v1.LogsService',
  metrics: 'opentelemetry.proto.collector.metrics.v1.MetricsService',
  traces: 'opentelemetry.proto.collector.trace.v1.TraceService',
};

const raw = (b: Buffer) => b;

/** A signal's Export method, bytes in and bytes out. */
export const grpcExportMethod = (signal: Signal) => ({
  path: `/${GRPC_SERVICES[signal]}/Export`,
  requestStream: false as const,
  responseStream: false as const,
  requestSerialize: raw,
  requestDeserialize: raw,
  responseSerialize: raw,
  responseDeserialize: raw,
});
