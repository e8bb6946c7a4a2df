/**
 * How a job holds its batch in Redis. A batch is stored compact, as its OTLP protobuf encoding
 * gzip-compressed (base64: BullMQ keeps job data as JSON text; several requests' batches may
 * share a job, group.ts), and decoded once, by the worker:
 * a 1,024-record batch takes about what it took on the wire, where the decoded OTLP/JSON tree
 * it replaces took 1.9 MB. Each job names its format, so a queue written by an older bridge
 * (`request`, the decoded tree) still drains.
 */
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { decodeExportRequest, type ExportRequestBySignal, type Signal } from '@ccbridge/otlp';
import { PermanentError } from '@ccbridge/errors';
import type { Group, GroupPart } from './group';

const gzip = promisify(zlib.gzip);
const gunzip = promisify(zlib.gunzip);

export const STORED_FORMAT = 'otlp-protobuf+gzip+base64';

/** A job's data as this bridge writes it. */
export interface StoredBatch {
  signal: Signal;
  items: number;
  format: typeof STORED_FORMAT;
  data: string;
  /** W3C traceparents of the requests the job holds, when the bridge traces its own work. */
  traceparents?: string[];
}

/** A job's data as bridges before 0.2 wrote it: the decoded request itself. */
interface TreeBatch {
  signal: Signal;
  items: number;
  request: ExportRequestBySignal[Signal];
  format?: undefined;
}

export type QueuedBatch = StoredBatch | TreeBatch;

/** A batch as the worker handles it. */
export interface BatchJob<S extends Signal = Signal> {
  signal: S;
  request: ExportRequestBySignal[S];
  /** Items (log records, data points, spans) in the batch. */
  items: number;
  /** Traces of the requests it holds (the bridge's own, when it traces its work). */
  traceparents?: string[];
}

/** A batch as the receiver hands it over: checked and counted, as protobuf (as it came, or encoded from JSON). */
export interface ReceivedBatch {
  items: number;
  protobuf: Uint8Array;
  /** The same protobuf gzip'd, when it came so: stored as it is, not compressed again. */
  gzipped?: Uint8Array;
  /** The trace of the request that brought it (the bridge's own tracing). */
  traceparent?: string;
}

/**
 * Batches this size or smaller are compressed on the event loop: for a few hundred KB that costs
 * less than the thread pool's round trips; larger ones go to the pool, not to hold others up.
 */
const INLINE_GZIP_BYTES = 256 * 1024;
/**
 * Output chunk for inflating a job: one chunk for a typical group (the default, 16 KB, is a pool
 * round trip each). zlib allocates it whole, 1 MiB for a job that inflates to 20 KB; sized to the
 * job instead (its gzip trailer's ISIZE), the worker's CPU did not change and its peak RSS rose by
 * 3.6 to 6 MiB: that memory outside V8's heap makes V8 collect sooner (docs/BENCHMARKS.md, "2026-12-08 (later)").
 */
const INFLATE_CHUNK_BYTES = 1024 * 1024;

/** A batch ready to be stored: the gzip it came as, else compressed at level 1 (on the ingest's hot path, and OTLP compresses well at any level). */
export async function groupPart(batch: ReceivedBatch): Promise<GroupPart> {
  const { protobuf } = batch;
  const gzipped =
    batch.gzipped ??
    (protobuf.length <= INLINE_GZIP_BYTES ? zlib.gzipSync(protobuf, { level: 1 }) : await gzip(protobuf, { level: 1 }));
  return {
    gzipped,
    items: batch.items,
    protobufBytes: protobuf.length,
    ...(batch.traceparent && { traceparent: batch.traceparent }),
  };
}

/** The stored form of a group of batches (group.ts): their gzip members one after another. */
export function storedBatch(signal: Signal, group: Group): StoredBatch {
  const data = Buffer.concat(group.parts.map((part) => part.gzipped)).toString('base64');
  const traceparents = group.parts.flatMap((part) => (part.traceparent ? [part.traceparent] : []));
  return { signal, items: group.items, format: STORED_FORMAT, data, ...(traceparents.length > 0 && { traceparents }) };
}

/**
 * What a job's data takes in Redis: the length of the JSON BullMQ stores it as (what recount.lua
 * reads with HSTRLEN). Base64 needs no escaping, so the batch's data is counted without being
 * serialised again.
 */
export function storedBytes(batch: QueuedBatch | undefined): number {
  if (!batch) return 0;
  if (batch.format !== STORED_FORMAT) return Buffer.byteLength(JSON.stringify(batch));
  return batch.data.length + Buffer.byteLength(JSON.stringify({ ...batch, data: '' }));
}

export class UnknownFormatError extends PermanentError {
  override name = 'UnknownFormatError';
}

/** The batch a job holds, whichever bridge wrote it. */
export async function batchOf(batch: QueuedBatch): Promise<BatchJob> {
  if (batch.format === undefined && 'request' in batch)
    return { signal: batch.signal, request: batch.request, items: batch.items };
  if (batch.format !== STORED_FORMAT)
    throw new UnknownFormatError(
      `a job in a format this bridge does not know: ${String((batch as { format?: unknown }).format)}`,
    );
  const gzipped = Buffer.from(batch.data, 'base64');
  const options = { chunkSize: INFLATE_CHUNK_BYTES };
  // A group's gzip is at most a few hundred KB (GROUP_MAX_PROTOBUF_BYTES of protobuf), unless one batch was larger.
  const protobuf =
    gzipped.length <= INLINE_GZIP_BYTES ? zlib.gunzipSync(gzipped, options) : await gunzip(gzipped, options);
  return {
    signal: batch.signal,
    request: decodeExportRequest(batch.signal, protobuf, 'protobuf'),
    items: batch.items,
    ...(batch.traceparents && { traceparents: batch.traceparents }),
  };
}
