/** An OTLP/gRPC client that sends raw Export*ServiceRequest bytes, as any OTLP/gRPC exporter does. */
import * as grpc from '@grpc/grpc-js';
import type { Signal } from '@ccbridge/otlp';

export const GRPC_SERVICES: Record<Signal, string> = {
  logs: 'opentelemetry.proto.collector.logs.v1.LogsService',
  metrics: 'opentelemetry.proto.collector.metrics.v1.MetricsService',
  traces: 'opentelemetry.proto.collector.trace.v1.TraceService',
};

const raw = (b: Buffer) => b;

export function exportGrpc(address: string, signal: Signal, body: Buffer, gzip = false): Promise<{ code: number; details?: string; response?: Buffer }> {
  const Client = grpc.makeGenericClientConstructor({
    Export: { path: `/${GRPC_SERVICES[signal]}/Export`, requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw },
  }, 'Export');
  const client = new Client(address, grpc.credentials.createInsecure(), gzip ? { 'grpc.default_compression_algorithm': grpc.compressionAlgorithms.gzip } : {});
  return new Promise((resolve) => {
    (client as unknown as { Export: (b: Buffer, cb: (e: grpc.ServiceError | null, r?: Buffer) => void) => void }).Export(body, (err, response) => {
      client.close();
      resolve(err ? { code: err.code, details: err.details } : { code: grpc.status.OK, response });
    });
  });
}
