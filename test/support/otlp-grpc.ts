/** An OTLP/gRPC client that sends raw Export*ServiceRequest bytes, as any OTLP/gRPC exporter does. */
import * as grpc from '@grpc/grpc-js';
import { grpcExportMethod, type Signal } from '@ccbridge/otlp';

export { GRPC_SERVICES } from '@ccbridge/otlp';

export interface ClientOptions {
  /** TLS: the CA that signed the server's certificate. */
  ca?: Buffer;
  /** Messages gzip'd by gRPC. */
  gzip?: boolean;
}

export interface CallOptions {
  /** Metadata sent with the call (e.g. `authorization`). */
  metadata?: Record<string, string>;
  /** Milliseconds the call may take before it ends DEADLINE_EXCEEDED (none by default). */
  deadlineMs?: number;
}

export type ExportOptions = Pick<ClientOptions, 'ca'> & CallOptions;

/** What an Export call came to: its status code, and the response's bytes when it is OK. */
export interface ExportAnswer {
  code: grpc.status;
  details?: string;
  response?: Buffer;
}

/** One gRPC channel to a signal's Export service, for many calls, as an exporter keeps one. */
export interface ExportClient {
  export(body: Buffer, options?: CallOptions): Promise<ExportAnswer>;
  close(): void;
}

type RawExport = (
  b: Buffer,
  m: grpc.Metadata,
  o: grpc.CallOptions,
  cb: (e: grpc.ServiceError | null, r?: Buffer) => void,
) => void;

export function grpcExportClient(address: string, signal: Signal, options: ClientOptions = {}): ExportClient {
  const Client = grpc.makeGenericClientConstructor({ Export: grpcExportMethod(signal) }, 'Export');
  const credentials = options.ca ? grpc.credentials.createSsl(options.ca) : grpc.credentials.createInsecure();
  const client = new Client(
    address,
    credentials,
    options.gzip ? { 'grpc.default_compression_algorithm': grpc.compressionAlgorithms.gzip } : {},
  );
  const exportRaw = (client as unknown as { Export: RawExport }).Export.bind(client);
  return {
    export: (body, call = {}) => {
      const metadata = new grpc.Metadata();
      for (const [k, v] of Object.entries(call.metadata ?? {})) metadata.set(k, v);
      const callOptions: grpc.CallOptions =
        call.deadlineMs === undefined ? {} : { deadline: Date.now() + call.deadlineMs };
      return new Promise((resolve) =>
        exportRaw(body, metadata, callOptions, (err, response) =>
          resolve(err ? { code: err.code, details: err.details } : { code: grpc.status.OK, response }),
        ),
      );
    },
    close: () => client.close(),
  };
}

/** One Export call on a channel of its own. */
export async function exportGrpc(
  address: string,
  signal: Signal,
  body: Buffer,
  gzip = false,
  options: ExportOptions = {},
): Promise<ExportAnswer> {
  const client = grpcExportClient(address, signal, { gzip, ca: options.ca });
  try {
    return await client.export(body, options);
  } finally {
    client.close();
  }
}
