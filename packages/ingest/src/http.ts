/**
 * The OTLP/HTTP receiver (logs, metrics, traces; protobuf and JSON; gzip)
 * that decodes and validates each request and hands it to a BatchSink, answering as the
 * OTLP/HTTP specification asks:
 *
 * | case                                          | status | body                               |
 * |-----------------------------------------------|--------|------------------------------------|
 * | stored in the queue                           | 200    | Export*ServiceResponse             |
 * | body does not decode / bad gzip               | 400    | google.rpc.Status with the reason  |
 * | no accepted bearer token (when required)      | 401    | Status, with WWW-Authenticate      |
 * | Content-Type other than protobuf or JSON      | 415    | google.rpc.Status                  |
 * | Content-Encoding other than gzip/deflate/br   | 415    | google.rpc.Status                  |
 * | body larger than maxBodyBytes (inflated)      | 413    | google.rpc.Status                  |
 * | queue full or Redis away (retryable)          | 503    | Status, with Retry-After           |
 *
 * Throttling is 503 + Retry-After, never 400/413: a Collector's otlphttp exporter retries
 * 429/502/503/504 and drops the data on any other status.
 */
import express, { type NextFunction, type Request, type Response } from 'express';
import {
  CONTENT_TYPES,
  encodeExportResponse,
  encodeStatus,
  type ScanLimits,
  type Signal,
  type WireFormat,
} from '@ccbridge/otlp';
import { RETRY_AFTER_SECONDS } from '@ccbridge/errors';
import type { Logger } from '@ccbridge/log';
import { bridgeMetrics, type RefusalReason } from '@ccbridge/telemetry';
import { AUTH_MESSAGE, type Authenticator } from './auth';
import { healthRouter, notFound, type HealthOptions } from './health';
import { readBody, type RequestBody } from './body';
import {
  BUSY_MESSAGE,
  readBatch,
  receiveBatch,
  refusalOf,
  type BatchSink,
  type InflightGate,
  type ReceivedBatch,
} from './receiver';

export interface IngestOptions {
  sink: BatchSink;
  maxBodyBytes: number;
  log: Logger;
  /** Shared by the HTTP and gRPC receivers: requests received at once. */
  gate: InflightGate;
  /** Bearer tokens, when required (auth.ts). */
  auth?: Authenticator;
  /** Attributes per message and bytes per value a request may carry (400 past them). */
  limits?: ScanLimits;
  /** Seconds a throttled client is asked to wait (Retry-After; default: the policy's, @ccbridge/errors). */
  retryAfterSeconds?: number;
}

/** The reason a refused request is counted under, by the status it is answered with (503s are counted where they are decided). */
const REFUSAL_BY_STATUS: Record<number, RefusalReason> = {
  400: 'decode',
  401: 'auth',
  405: 'unsupported',
  413: 'size',
  415: 'unsupported',
};

const PATHS: Record<string, Signal> = { '/v1/logs': 'logs', '/v1/metrics': 'metrics', '/v1/traces': 'traces' };

/** The wire format a Content-Type names, or undefined for one OTLP/HTTP does not define. */
export function wireFormatOf(contentType: string | undefined): WireFormat | undefined {
  const media = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (media === CONTENT_TYPES.protobuf) return 'protobuf';
  if (media === CONTENT_TYPES.json) return 'json';
  return undefined;
}

/** Express routes for /v1/{logs,metrics,traces}; mount beside the health routes. */
export function otlpRouter(options: IngestOptions): express.Router {
  const { sink, log } = options;
  const retryAfter = String(options.retryAfterSeconds ?? RETRY_AFTER_SECONDS);
  const router = express.Router();

  const reply = (req: Request, res: Response, status: number, message: string) => {
    const reason = REFUSAL_BY_STATUS[status];
    if (reason) bridgeMetrics.refusedRequest('http', reason);
    const format = wireFormatOf(req.headers['content-type']) ?? 'json';
    if (status === 503 || status === 429) res.setHeader('Retry-After', retryAfter);
    res
      .status(status)
      .type(CONTENT_TYPES[format])
      .send(Buffer.from(encodeStatus(format, status, message)));
  };

  for (const [path, signal] of Object.entries(PATHS)) {
    router.all(path, (req, res, next) => {
      if (req.method !== 'POST') {
        res.setHeader('Allow', 'POST');
        return reply(req, res, 405, `${req.method} is not allowed on ${path}: use POST`);
      }
      if (options.auth && !options.auth.accepts(req.headers.authorization)) {
        log.warn({ signal, remote: req.socket.remoteAddress }, 'refused a request without an accepted bearer token');
        res.setHeader('WWW-Authenticate', 'Bearer');
        return reply(req, res, 401, AUTH_MESSAGE);
      }
      if (!wireFormatOf(req.headers['content-type'])) {
        return reply(
          req,
          res,
          415,
          `Content-Type ${JSON.stringify(req.headers['content-type'] ?? '')} is not supported: use ${CONTENT_TYPES.protobuf} or ${CONTENT_TYPES.json}`,
        );
      }
      if (!options.gate.tryEnter()) {
        log.warn({ signal, limit: options.gate.limit }, 'throttled a request: too many at once');
        bridgeMetrics.refusedRequest('http', 'busy');
        return reply(req, res, 503, BUSY_MESSAGE);
      }
      res.once('close', () => options.gate.leave());
      next();
    });
    router.post(path, async (req, res) => {
      const format = wireFormatOf(req.headers['content-type'])!;
      let body: RequestBody | undefined;
      let batch: ReceivedBatch | undefined;
      try {
        body = await readBody(req, options.maxBodyBytes);
        batch = readBatch(signal, body.bytes, format, options.limits, body.encoding === 'gzip' ? body.raw : undefined);
        const { items } = await receiveBatch(sink, log, signal, batch, 'http');
        log.debug({ signal, format, items, bytes: body.bytes.length }, 'accepted a batch');
      } catch (err) {
        // The error's kind, in OTLP/HTTP's terms (the table above).
        const refusal = refusalOf(err);
        if (refusal.retry) return reply(req, res, 503, refusal.message);
        if (body && !batch)
          log.warn(
            { signal, format, bytes: body.bytes.length, reason: refusal.message },
            'rejected a request that does not decode',
          );
        return reply(req, res, refusal.status, refusal.message);
      }
      res
        .status(200)
        .type(CONTENT_TYPES[format])
        .send(Buffer.from(encodeExportResponse(signal, format)));
    });
  }

  router.use((err: Error, req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(err);
    log.error({ err: err.message, stack: err.stack }, 'unexpected error while receiving');
    return reply(req, res, 500, 'internal error');
  });
  return router;
}

/** The whole HTTP app: health routes, OTLP routes when a receiver is given, 404 otherwise. */
export function createHttpApp(health: HealthOptions, otlp?: IngestOptions): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.use(healthRouter(health));
  if (otlp) app.use(otlpRouter(otlp));
  app.use(notFound);
  return app;
}
