/**
 * What every OTLP receiver does with a decoded request, whatever the transport: count it, check
 * the queue can take it, and store it. A request that cannot be taken is a typed error
 * (@ccbridge/errors); HTTP and gRPC only translate its kind (refusalOf) into their own status codes.
 */
import { jsonToProtobuf, scanExportRequest, type ScanLimits, type Signal, type WireFormat } from '@ccbridge/otlp';
import { BackpressureError, RetryableError, kindOf } from '@ccbridge/errors';
import type { Logger } from '@ccbridge/log';
import { SpanKind, bridgeMetrics, currentTraceparent, inSpan, type Transport } from '@ccbridge/telemetry';
import type { Acceptance, ReceivedBatch } from '@ccbridge/queue';

export type { Acceptance, ReceivedBatch };

/**
 * A request body, checked and counted, as the protobuf to store: protobuf is walked (scan.ts)
 * and kept as it came (with its gzip form when it came gzip'd: `gzipped`); JSON is parsed and
 * encoded once, and its encoding walked for the limits. Throws DecodeError for a body that does
 * not decode or goes past a limit.
 */
export function readBatch(
  signal: Signal,
  body: Uint8Array,
  format: WireFormat,
  limits?: ScanLimits,
  gzipped?: Uint8Array,
): ReceivedBatch {
  if (format === 'protobuf')
    return { items: scanExportRequest(signal, body, limits), protobuf: body, ...(gzipped && { gzipped }) };
  const batch = jsonToProtobuf(signal, body);
  if (limits) scanExportRequest(signal, batch.protobuf, limits);
  return batch;
}

/** Where accepted batches go: the queue in production, anything in tests. */
export interface BatchSink {
  /** Whether batches of this signal are stored (metrics only while they are forwarded). */
  queues(signal: Signal): boolean;
  acceptance(signal: Signal): Promise<Acceptance>;
  enqueue(signal: Signal, batch: ReceivedBatch): Promise<void>;
}

type Outcome =
  | { stored: true; items: number }
  /** The client should send the same data again later: the queue is full (backpressure) or Redis is away (retryable). */
  | { stored: false; error: BackpressureError | RetryableError };

/**
 * Stores a batch and says how many items it held; throws BackpressureError while the queue is
 * full, RetryableError while Redis cannot take it (both "retry later" to the client).
 */
export async function receiveBatch(
  sink: BatchSink,
  log: Logger,
  signal: Signal,
  batch: ReceivedBatch,
  transport: Transport,
): Promise<{ items: number }> {
  const attributes = { 'ccbridge.signal': signal, 'ccbridge.items': batch.items, 'ccbridge.transport': transport };
  const outcome = await inSpan('ccbridge.receive', { kind: SpanKind.SERVER, attributes }, (span) =>
    storeBatch(sink, log, signal, batch, transport).then((outcome) => {
      span.setAttribute('ccbridge.stored', outcome.stored);
      return outcome;
    }),
  );
  if (!outcome.stored) throw outcome.error;
  return outcome;
}

/** What a receiver answers for a request it cannot take, by the error's kind (the policy, @ccbridge/errors). */
export type Refusal =
  /** The client's mistake (permanent): HTTP 400, 413 or 415 / INVALID_ARGUMENT, never to be sent again as it is. */
  | { retry: false; status: 400 | 413 | 415; message: string }
  /** Backpressure or retryable: HTTP 503 with Retry-After / UNAVAILABLE, the client sends it again later. */
  | { retry: true; message: string };

export function refusalOf(err: unknown): Refusal {
  const message = err instanceof Error ? err.message : String(err);
  if (kindOf(err) !== 'permanent') return { retry: true, message };
  const status = (err as { status?: unknown }).status;
  return { retry: false, status: status === 413 || status === 415 ? status : 400, message };
}

async function storeBatch(
  sink: BatchSink,
  log: Logger,
  signal: Signal,
  batch: ReceivedBatch,
  transport: Transport,
): Promise<Outcome> {
  const items = batch.items;
  if (items === 0) return { stored: true, items };
  if (!sink.queues(signal)) {
    // Metrics while forwarding them is off (BRIDGE_FORWARD_METRICS): validated, then answered.
    log.debug({ signal, items }, 'acknowledged a batch that nothing uses (not queued)');
    bridgeMetrics.accepted(signal, transport, items);
    return { stored: true, items };
  }
  const refuse = (reason: 'queue_full' | 'unavailable', message: string): Outcome => {
    bridgeMetrics.refused(signal, transport, reason, items);
    bridgeMetrics.refusedRequest(transport, reason);
    return {
      stored: false,
      error: reason === 'queue_full' ? new BackpressureError(message) : new RetryableError(message),
    };
  };
  const acceptance = await sink.acceptance(signal);
  if (acceptance !== 'ok') {
    log.warn({ signal, items, acceptance }, 'throttled a request');
    return acceptance === 'full'
      ? refuse('queue_full', 'the bridge queue is full; retry later')
      : refuse('unavailable', 'the bridge queue (Redis) is unavailable; retry later');
  }
  try {
    // The job carries the trace on, to the worker that processes it.
    await inSpan('ccbridge.enqueue', {}, () => sink.enqueue(signal, { ...batch, traceparent: currentTraceparent() }));
  } catch (err) {
    log.error({ signal, items, err: (err as Error).message }, 'could not store a batch in the queue');
    return refuse('unavailable', 'the bridge queue (Redis) is unavailable; retry later');
  }
  bridgeMetrics.accepted(signal, transport, items);
  return { stored: true, items };
}

/**
 * Bounds the requests being received at once, so memory stays bounded under overload (at most
 * `limit` bodies of the size limit): past it a receiver answers "retry later" before reading.
 */
export class InflightGate {
  private inflight = 0;

  constructor(readonly limit: number) {}

  tryEnter(): boolean {
    if (this.inflight >= this.limit) return false;
    this.inflight += 1;
    return true;
  }

  leave(): void {
    this.inflight -= 1;
  }
}

export const BUSY_MESSAGE = 'the bridge is receiving as many requests as it takes at once; retry later';
