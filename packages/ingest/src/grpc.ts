/**
 * The OTLP/gRPC receiver: the LogsService, MetricsService and TraceService `Export` methods
 * (gzip-compressed or not), answering as the OTLP specification asks: the Export*ServiceResponse
 * once the batch is stored, UNAUTHENTICATED without an accepted bearer token (when tokens are
 * required), INVALID_ARGUMENT for a message that does not decode, UNAVAILABLE
 * (retryable) while the queue is full or Redis is away, RESOURCE_EXHAUSTED above the size limit,
 * INTERNAL for an unexpected failure (HTTP's 500).
 *
 * Messages are taken as raw bytes and decoded by the same codec as OTLP/HTTP protobuf, so both
 * transports reach the queue in one form.
 */
import * as grpc from '@grpc/grpc-js';
import { GRPC_SERVICES, encodeExportResponse, grpcExportMethod, type ScanLimits, type Signal } from '@ccbridge/otlp';
import type { Logger } from '@ccbridge/log';
import { bridgeMetrics } from '@ccbridge/telemetry';
import { AUTH_MESSAGE, type Authenticator } from './auth';
import { BUSY_MESSAGE, readBatch, receiveBatch, refusalOf, type BatchSink, type InflightGate } from './receiver';

export interface GrpcReceiverOptions {
  sink: BatchSink;
  maxBodyBytes: number;
  log: Logger;
  gate: InflightGate;
  /** Bearer tokens, when required (auth.ts): the `authorization` metadata. */
  auth?: Authenticator;
  /** Attributes per message and bytes per value a request may carry (INVALID_ARGUMENT past them). */
  limits?: ScanLimits;
}

export function createGrpcReceiver(options: GrpcReceiverOptions): grpc.Server {
  const { sink, log } = options;
  const server = new grpc.Server({
    'grpc.max_receive_message_length': options.maxBodyBytes,
    // grpc-js reads a message whole before the handler runs: bound the calls per connection too.
    'grpc.max_concurrent_streams': options.gate.limit,
  });
  for (const signal of Object.keys(GRPC_SERVICES) as Signal[]) {
    const definition: grpc.ServiceDefinition = { Export: grpcExportMethod(signal) };
    type Call = grpc.ServerUnaryCall<Buffer, Buffer>;
    type Callback = grpc.sendUnaryData<Buffer>;
    const answer = async (call: Call, callback: Callback): Promise<void> => {
      // grpc-js has read the message by now; the gate bounds the decoded batches held at once.
      if (options.auth && !options.auth.accepts(String(call.metadata.get('authorization')[0] ?? ''))) {
        log.warn(
          { signal, transport: 'grpc', remote: call.getPeer() },
          'refused a call without an accepted bearer token',
        );
        bridgeMetrics.refusedRequest('grpc', 'auth');
        return callback({ code: grpc.status.UNAUTHENTICATED, details: AUTH_MESSAGE });
      }
      if (!options.gate.tryEnter()) {
        bridgeMetrics.refusedRequest('grpc', 'busy');
        return callback({ code: grpc.status.UNAVAILABLE, details: BUSY_MESSAGE });
      }
      try {
        await exportBatch(call, callback);
      } finally {
        options.gate.leave();
      }
    };
    const exportBatch = async (call: Call, callback: Callback): Promise<void> => {
      try {
        const { items } = await receiveBatch(
          sink,
          log,
          signal,
          readBatch(signal, call.request, 'protobuf', options.limits),
          'grpc',
        );
        log.debug({ signal, transport: 'grpc', items, bytes: call.request.length }, 'accepted a batch');
      } catch (err) {
        // The error's kind, in gRPC's terms: UNAVAILABLE is retried by OTLP exporters, INVALID_ARGUMENT is not.
        const refusal = refusalOf(err);
        if (refusal.retry) return callback({ code: grpc.status.UNAVAILABLE, details: refusal.message });
        log.warn(
          { signal, transport: 'grpc', bytes: call.request.length, reason: refusal.message },
          'rejected a request that does not decode',
        );
        bridgeMetrics.refusedRequest('grpc', 'decode');
        return callback({ code: grpc.status.INVALID_ARGUMENT, details: refusal.message });
      }
      callback(null, Buffer.from(encodeExportResponse(signal, 'protobuf')));
    };
    // grpc-js ignores what a handler returns: a failure that escapes the answer (a bug: what the
    // receiving throws is answered by its kind above) is logged and answered INTERNAL, never left
    // unhandled.
    const Export: grpc.handleUnaryCall<Buffer, Buffer> = (call, callback) =>
      void answer(call, callback).catch((err: unknown) => {
        log.error(
          { signal, transport: 'grpc', err: (err as Error).message, stack: (err as Error).stack },
          'unexpected error while receiving',
        );
        callback({ code: grpc.status.INTERNAL, details: 'internal error' });
      });
    server.addService(definition, { Export });
  }
  return server;
}

/** TLS for the gRPC receiver: a PEM certificate chain and its key. */
export interface TlsFiles {
  cert: Buffer;
  key: Buffer;
}

/** Binds and starts the server (with TLS when given); rejects with a message naming the port when it cannot. */
export function listenGrpc(server: grpc.Server, host: string, port: number, tls?: TlsFiles): Promise<number> {
  const credentials = tls
    ? grpc.ServerCredentials.createSsl(null, [{ cert_chain: tls.cert, private_key: tls.key }], false)
    : grpc.ServerCredentials.createInsecure();
  return new Promise((resolve, reject) => {
    server.bindAsync(`${host}:${port}`, credentials, (err, bound) => {
      if (err) reject(new Error(`cannot listen for OTLP/gRPC on ${host}:${port}: ${err.message}`));
      else resolve(bound);
    });
  });
}

/** Stops taking calls and waits for those in flight (bounded by the caller's shutdown timeout). */
export function closeGrpc(server: grpc.Server): Promise<void> {
  return new Promise((resolve) => server.tryShutdown(() => resolve()));
}
