/** An OTLP/gRPC client that sends raw Export*ServiceRequest bytes, as any OTLP/gRPC exporter does. */
import * as grpc from '@grpc/grpc-js';
import type { Signal } from '@ccbridge/otlp';

export const GRPC_SERVICES: Record<Signal, string> = {
  logs: 'opentelemetry.proto.collector.logs.v1.LogsService',
  metrics: 'opentelemetry.proto.collector.metrics.v1.MetricsService',
  traces: 'opentelemetry.proto.collector.trace.v1.TraceService',
};

const raw = (b: Buffer) => b;

export interface ExportOptions {
  /** TLS: the CA that signed the server's certificate. */
  ca?: Buffer;
  /** Metadata sent with the call (e.g. `authorization`). */
  metadata?: Record<string, string>;
  /** Milliseconds the call may take before it ends DEADLINE_EXCEEDED (none by default). */
  deadlineMs?: number;
}

export function exportGrpc(
  address: string,
  signal: Signal,
  body: Buffer,
  gzip = false,
  options: ExportOptions = {},
): Promise<{ code: number; details?: string; response?: Buffer }> {
  const Client = grpc.makeGenericClientConstructor(
    {
      Export: {
        path: `/${GRPC_SERVICES[signal]}/Export`,
        requestStream: false,
        responseStream: false,
        requestSerialize: raw,
        requestDeserialize: raw,
        responseSerialize: raw,
        responseDeserialize: raw,
      },
    },
    'Export',
  );
  const credentials = options.ca ? grpc.credentials.createSsl(options.ca) : grpc.credentials.createInsecure();
  const client = new Client(
    address,
    credentials,
    gzip ? { 'grpc.default_compression_algorithm': grpc.compressionAlgorithms.gzip } : {},
  );
  const metadata = new grpc.Metadata();
  for (const [k, v] of Object.entries(options.metadata ?? {})) metadata.set(k, v);
  return new Promise((resolve) => {
    const callOptions: grpc.CallOptions =
      options.deadlineMs === undefined ? {} : { deadline: Date.now() + options.deadlineMs };
    (
      client as unknown as {
        Export: (
          b: Buffer,
          m: grpc.Metadata,
          o: grpc.CallOptions,
          cb: (e: grpc.ServiceError | null, r?: Buffer) => void,
        ) => void;
      }
    ).Export(body, metadata, callOptions, (err, response) => {
      client.close();
      resolve(err ? { code: err.code, details: err.details } : { code: grpc.status.OK, response });
    });
  });
}
