/**
 * Bodies for fuzzing the receivers: the real captures (logs, metrics, traces; protobuf and
 * JSON), mutated at random from a seed: bytes flipped, cut, inserted; JSON text edited and its
 * values swapped for other types; extreme numbers (1e308, NaN, ±2^63, timestamps of 2^64-1) put
 * where Claude Code puts numbers; deep nesting; gzip of all those, gzip cut short or bombing past
 * the limit; and content types and encodings a receiver does not take.
 */
import zlib from 'node:zlib';
import { encodeExportRequest, type LogRecord, type Signal } from '@ccbridge/otlp';
import { SCENARIOS, logsOf, payloads } from './fixtures';
import { prng } from './assembly';

export interface FuzzBody {
  signal: Signal;
  body: Buffer;
  contentType: string;
  encoding?: string;
  kind: string;
}

const BASES = SCENARIOS.flatMap((s) => [...payloads('protobuf', s), ...payloads('json', s)]);

const EXTREME_VALUES: object[] = [
  { doubleValue: 1e308 },
  { doubleValue: -1e308 },
  { doubleValue: Number.MAX_VALUE },
  { doubleValue: 5e-324 },
  { doubleValue: 'NaN' },
  { doubleValue: 'Infinity' },
  { doubleValue: '-Infinity' },
  { intValue: '9223372036854775807' },
  { intValue: '-9223372036854775808' },
  { intValue: '0' },
  { intValue: '-1' },
  { stringValue: '1e308' },
  { stringValue: 'NaN' },
  { stringValue: '-5' },
  { stringValue: '' },
  { stringValue: '\u0000' },
  { boolValue: true },
  { arrayValue: { values: [{ intValue: '1' }] } },
  { kvlistValue: { values: [] } },
  {},
];
const EXTREME_TIMES = ['0', '1', '18446744073709551615', '9223372036854775807', '253402300799000000000'];

/** A capture's records with numbers (and times) replaced by extreme ones. */
function extremeNumbers(random: () => number): Buffer {
  const scenario = SCENARIOS[Math.floor(random() * SCENARIOS.length)]!;
  const request = logsOf('json', scenario);
  const pick = <T>(list: readonly T[]) => list[Math.floor(random() * list.length)]!;
  for (const rl of request.resourceLogs ?? []) {
    for (const sl of rl.scopeLogs ?? []) {
      sl.logRecords = (sl.logRecords ?? []).map((r): LogRecord => ({
        ...r,
        ...(random() < 0.3 && { timeUnixNano: pick(EXTREME_TIMES) }),
        attributes: (r.attributes ?? []).map((a) => (random() < 0.3 ? { key: a.key, value: pick(EXTREME_VALUES) } : a)),
      }));
    }
  }
  return Buffer.from(encodeExportRequest('logs', request, random() < 0.5 ? 'protobuf' : 'json'));
}

function mutateBytes(b: Buffer, random: () => number): Buffer {
  const out = Buffer.from(b);
  const kind = Math.floor(random() * 5);
  const at = Math.floor(random() * Math.max(1, out.length));
  if (kind === 0) {
    for (let k = 0; k < 1 + Math.floor(random() * 4); k++)
      out[Math.floor(random() * out.length)] = Math.floor(random() * 256);
    return out;
  }
  if (kind === 1) return out.subarray(0, at);
  if (kind === 2)
    return Buffer.concat([
      out.subarray(0, at),
      Buffer.from(Array.from({ length: 1 + Math.floor(random() * 8) }, () => Math.floor(random() * 256))),
      out.subarray(at),
    ]);
  if (kind === 3)
    return Buffer.concat([out.subarray(0, at), out.subarray(Math.min(out.length, at + 1 + Math.floor(random() * 16)))]);
  // An extreme varint (ten bytes of 0xff) where a byte was.
  return Buffer.concat([out.subarray(0, at), Buffer.alloc(9, 0xff), Buffer.from([0x01]), out.subarray(at + 1)]);
}

const JSON_SWAPS = [
  'null',
  'true',
  '1e400',
  '-1e400',
  '"x"',
  '[]',
  '{}',
  '"NaN"',
  '18446744073709551616',
  '"' + 'f'.repeat(33) + '"',
];

function mutateJson(b: Buffer, random: () => number): Buffer {
  const text = b.toString('utf8');
  if (random() < 0.5) {
    // A value swapped for another type.
    const values = [...text.matchAll(/:("(?:[^"\\]|\\.)*"|-?\d[\d.eE+-]*|true|false|null)/g)];
    const m = values[Math.floor(random() * values.length)];
    if (m)
      return Buffer.from(
        text.slice(0, m.index + 1) +
          JSON_SWAPS[Math.floor(random() * JSON_SWAPS.length)] +
          text.slice(m.index + m[0].length),
      );
  }
  return mutateBytes(b, random);
}

function deepJson(depth: number): Buffer {
  return Buffer.from(
    `{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":${'{"arrayValue":{"values":['.repeat(depth)}${']}}'.repeat(depth)}}]}]}]}`,
  );
}

/** `count` bodies from `seed`, the same every time. */
export function* fuzzBodies(count: number, seed: number, limitBytes: number): Generator<FuzzBody> {
  const random = prng(seed);
  for (let n = 0; n < count; n++) {
    const base = BASES[Math.floor(random() * BASES.length)]!;
    const contentType = base.format === 'protobuf' ? 'application/x-protobuf' : 'application/json';
    const roll = random();
    let out: FuzzBody;
    if (roll < 0.35)
      out = {
        signal: base.signal,
        body: base.format === 'json' ? mutateJson(base.body, random) : mutateBytes(base.body, random),
        contentType,
        kind: `mutated ${base.format}`,
      };
    else if (roll < 0.5) {
      const body = extremeNumbers(random);
      out = {
        signal: 'logs',
        body,
        contentType: body[0] === 0x7b ? 'application/json' : 'application/x-protobuf',
        kind: 'extreme numbers',
      };
    } else if (roll < 0.62)
      out = {
        signal: base.signal,
        body: zlib.gzipSync(mutateBytes(base.body, random), { level: 1 }),
        contentType,
        encoding: 'gzip',
        kind: 'gzip of a mutated body',
      };
    else if (roll < 0.7)
      out = {
        signal: base.signal,
        body: mutateBytes(zlib.gzipSync(base.body, { level: 1 }), random),
        contentType,
        encoding: 'gzip',
        kind: 'mutated gzip',
      };
    else if (roll < 0.75)
      out = {
        signal: base.signal,
        body: Buffer.from(Array.from({ length: Math.floor(random() * 2048) }, () => Math.floor(random() * 256))),
        contentType,
        encoding: random() < 0.3 ? 'gzip' : undefined,
        kind: 'random bytes',
      };
    else if (roll < 0.78)
      out = {
        signal: 'logs',
        body: deepJson(10 + Math.floor(random() * 3000)),
        contentType: 'application/json',
        kind: 'deep nesting',
      };
    else if (roll < 0.8)
      out = {
        signal: 'logs',
        body: zlib.gzipSync(Buffer.alloc(limitBytes + 1 + Math.floor(random() * limitBytes), 0x20)),
        contentType,
        encoding: 'gzip',
        kind: 'gzip bomb',
      };
    else if (roll < 0.83)
      out = {
        signal: base.signal,
        body: base.body,
        contentType: ['text/plain', 'application/grpc', '', 'application/x-protobuf; charset=x', 'application/jsonx'][
          Math.floor(random() * 5)
        ]!,
        kind: 'content type',
      };
    else if (roll < 0.85)
      out = {
        signal: base.signal,
        body: base.body,
        contentType,
        encoding: ['br', 'deflate', 'zstd', 'gzip, gzip', 'x-gzip'][Math.floor(random() * 5)]!,
        kind: 'content encoding',
      };
    else out = { signal: base.signal, body: base.body, contentType, kind: 'valid' };
    yield out;
  }
}
