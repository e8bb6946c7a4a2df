/**
 * The ingest: the OTLP receivers (HTTP routes served by the bridge's HTTP server, gRPC on its
 * own port) wired to the queue. Wiring only.
 */
import type { BridgeConfig } from '@ccbridge/config';
import type { Logger } from '@ccbridge/log';
import { BatchProducer } from '@ccbridge/queue';
import { connectRedis, type RedisTarget } from '@ccbridge/redis';
import { observeGauge } from '@ccbridge/telemetry';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import {
  InflightGate,
  closeGrpc,
  createAuthenticator,
  createGrpcReceiver,
  createHttpApp,
  listenGrpc,
  type HealthOptions,
  type IngestOptions,
  type TlsFiles,
} from '@ccbridge/ingest';

export interface IngestService {
  /** What the bridge's HTTP server needs to serve the OTLP routes. */
  options: IngestOptions;
  /** The port the gRPC receiver got (OTLP_GRPC_PORT, or the one the system chose for 0). */
  grpcPort: number;
  /** The OTLP/HTTP server (HTTPS when TLS is configured), with the health routes too; not yet listening. */
  httpServer(health: HealthOptions): http.Server | https.Server;
  close(): Promise<void>;
}

/** The receivers' TLS certificate and key, when configured (read once, at start-up). */
export function tlsFiles(config: BridgeConfig): TlsFiles | undefined {
  return config.tlsCertFile && config.tlsKeyFile
    ? { cert: readFileSync(config.tlsCertFile), key: readFileSync(config.tlsKeyFile) }
    : undefined;
}

/** Connects the queue and serves OTLP/gRPC; the OTLP/HTTP routes are served by the caller's HTTP server. */
export async function startIngest(config: BridgeConfig, target: RedisTarget, log: Logger): Promise<IngestService> {
  const redis = connectRedis(target, 'producer');
  redis.on('error', (err: Error) => log.warn({ err: err.message }, 'redis connection error'));
  // Forwarded metrics have their own share of the byte bound; the events and spans the rest.
  const metricsShare = config.forwardMetrics ? (config.queueMetricsMaxBytes ?? 0) : 0;
  const producer = new BatchProducer(redis, {
    maxWaiting: config.queueMaxWaiting,
    maxBytes: config.queueMaxBytes - metricsShare,
    ...(config.forwardMetrics && { metricsMaxBytes: metricsShare }),
    attempts: config.jobAttempts,
  });
  observeGauge(
    'queue_size',
    'Batches (jobs) waiting in the queue, not yet processed',
    async () => (await producer.reading()).jobs,
  );
  observeGauge(
    'queue_size_bytes',
    'Bytes the queued batches take in Redis',
    async () => (await producer.reading()).bytes,
    'By',
  );
  observeGauge(
    'queue_capacity_bytes',
    "The queue's bound in bytes (BRIDGE_QUEUE_MAX_BYTES)",
    () => config.queueMaxBytes,
    'By',
  );
  const options: IngestOptions = {
    sink: producer,
    maxBodyBytes: config.maxBodyBytes,
    log,
    gate: new InflightGate(config.maxConcurrentRequests),
    ...(config.authTokens.length > 0 && { auth: createAuthenticator(config.authTokens) }),
    limits: { maxAttributes: config.maxAttributes, maxValueBytes: config.maxValueBytes },
  };
  const grpc = createGrpcReceiver(options);
  const tls = tlsFiles(config);
  let grpcPort: number;
  try {
    grpcPort = await listenGrpc(grpc, config.otlpGrpcHost, config.otlpGrpcPort, tls);
  } catch (err) {
    await producer.close();
    redis.disconnect();
    throw new Error(`OTLP_GRPC_PORT=${config.otlpGrpcPort}: ${(err as Error).message}`);
  }
  return {
    options,
    grpcPort,
    httpServer(health) {
      const app = createHttpApp(health, options);
      const server = tls ? https.createServer({ cert: tls.cert, key: tls.key }, app) : http.createServer(app);
      // Collectors keep connections alive; let idle ones go quickly on shutdown.
      server.keepAliveTimeout = 5_000;
      return server;
    },
    async close() {
      await closeGrpc(grpc);
      await producer.close();
      redis.disconnect();
    },
  };
}
