/**
 * Reads an OTLP/HTTP request body: as it came over the wire, and decompressed.
 *
 * body-parser hands over only the decompressed bytes; the queue stores batches gzip'd, so a
 * gzip'd body (what a Collector's otlphttp exporter sends) is kept as it came instead of being
 * compressed again on the hot path. raw-body (the reader body-parser itself uses) reads the
 * bytes with its limit and length checks; node:zlib undoes the encoding with the same limit
 * on the decompressed size, so a small compressed body cannot expand past it in memory.
 */
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import type { IncomingMessage } from 'node:http';
import getRawBody from 'raw-body';
import { PermanentError } from '@ccbridge/errors';

export type ContentEncoding = 'gzip' | 'deflate' | 'br' | 'identity';

export interface RequestBody {
  /** The bytes as they came (compressed when `encoding` is not identity). */
  raw: Buffer;
  encoding: ContentEncoding;
  /** The body decompressed. */
  bytes: Buffer;
}

/** A body that cannot be taken, with the HTTP status that says why (never a retryable one). */
export class BodyError extends PermanentError {
  override name = 'BodyError';
  constructor(
    readonly status: 400 | 413 | 415,
    message: string,
  ) {
    super(message);
  }
}

type Compressed = Exclude<ContentEncoding, 'identity'>;
type Decompress = (buf: Buffer, options: zlib.ZlibOptions) => Buffer;
const DECOMPRESS: Record<
  Compressed,
  { sync: Decompress; async: (buf: Buffer, options: zlib.ZlibOptions) => Promise<Buffer> }
> = {
  gzip: { sync: zlib.gunzipSync, async: promisify(zlib.gunzip) },
  deflate: { sync: zlib.inflateSync, async: promisify(zlib.inflate) },
  br: { sync: zlib.brotliDecompressSync, async: promisify(zlib.brotliDecompress) },
};

/**
 * Bodies compressed to this size or less are decompressed on the event loop: a Collector's
 * batch is a few KB gzip'd, and handing it to the thread pool costs more than inflating it (a
 * round trip per 16 KB of output). Larger ones go to the thread pool, so one request cannot
 * hold the others up.
 */
const INLINE_COMPRESSED_BYTES = 64 * 1024;

function decompress(encoding: Compressed, raw: Buffer, limit: number): Buffer | Promise<Buffer> {
  // One output chunk for a typical batch (and never more than the limit).
  const options = { maxOutputLength: limit, chunkSize: Math.min(limit, 256 * 1024) };
  if (raw.length <= INLINE_COMPRESSED_BYTES) return DECOMPRESS[encoding].sync(raw, options);
  return DECOMPRESS[encoding].async(raw, options);
}

/** The Content-Encoding a request names, or undefined for one the receiver does not undo. */
export function contentEncodingOf(header: string | undefined): ContentEncoding | undefined {
  const value = (header ?? 'identity').trim().toLowerCase() || 'identity';
  return value === 'identity' || value in DECOMPRESS ? (value as ContentEncoding) : undefined;
}

const tooLarge = (limit: number) =>
  new BodyError(413, `body is larger than the limit of ${limit} bytes (after decompression)`);

/** Reads and decompresses a request's body, both bounded by `limit` bytes; throws BodyError. */
export async function readBody(req: IncomingMessage, limit: number): Promise<RequestBody> {
  const header = req.headers['content-encoding'];
  const encoding = contentEncodingOf(header);
  if (!encoding)
    throw new BodyError(
      415,
      `Content-Encoding ${JSON.stringify(header)} is not supported: use gzip or no Content-Encoding`,
    );
  let raw: Buffer;
  try {
    raw = await getRawBody(req, { length: req.headers['content-length'], limit });
  } catch (err) {
    if ((err as getRawBody.RawBodyError).type === 'entity.too.large') throw tooLarge(limit);
    throw new BodyError(400, `body could not be read: ${(err as Error).message}`);
  }
  if (encoding === 'identity') return { raw, encoding, bytes: raw };
  try {
    return { raw, encoding, bytes: await decompress(encoding, raw, limit) };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw tooLarge(limit);
    throw new BodyError(400, `body could not be read: ${encoding}: ${(err as Error).message}`);
  }
}
