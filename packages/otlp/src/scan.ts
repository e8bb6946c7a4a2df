/**
 * Validates a protobuf export request and counts its items without decoding it into objects.
 *
 * The receiver must answer 400 for a body that does not decode, and stores what it takes as
 * the protobuf it came as (the worker decodes it): building the whole object tree only to
 * check it took most of the receiver's time and garbage. This walks the wire format against
 * the same schema (protobufjs reflection over packages/otlp/proto): every length must fit, every
 * string must be UTF-8 (protobufjs decodes strings strictly), every message must parse; unknown
 * fields, and known numbers in another wire type, are skipped by wire type. It is at
 * least as strict as `decodeExportRequest`, so a body it takes always decodes (a fuzz test holds
 * the two together).
 */
import { isUtf8 } from 'node:buffer';
import type protobuf from 'protobufjs';
import { DecodeError, requestType } from './codec';
import type { Signal } from './types';

const WIRE = { VARINT: 0, I64: 1, LEN: 2, SGROUP: 3, EGROUP: 4, I32: 5 } as const;

const SCALAR_WIRE: Record<string, number> = {
  int32: WIRE.VARINT,
  int64: WIRE.VARINT,
  uint32: WIRE.VARINT,
  uint64: WIRE.VARINT,
  sint32: WIRE.VARINT,
  sint64: WIRE.VARINT,
  bool: WIRE.VARINT,
  fixed64: WIRE.I64,
  sfixed64: WIRE.I64,
  double: WIRE.I64,
  fixed32: WIRE.I32,
  sfixed32: WIRE.I32,
  float: WIRE.I32,
  string: WIRE.LEN,
  bytes: WIRE.LEN,
};

interface FieldRule {
  wire: number;
  /** A repeated scalar may also come packed (one LEN of values). */
  packable: boolean;
  string: boolean;
  message?: MessageRules;
  /** This field's occurrences are the request's items. */
  item: boolean;
  /** A KeyValue: its occurrences in one message are attributes, counted against the limit. */
  attribute: boolean;
}

/** Limits a request must keep (BRIDGE_MAX_ATTRIBUTES, BRIDGE_MAX_VALUE_BYTES); past them it is refused with the reason. */
export interface ScanLimits {
  /** KeyValues in one message: a record's, span's or resource's attributes, or a kvlist's entries. */
  maxAttributes: number;
  /** Bytes of one string or bytes value. */
  maxValueBytes: number;
}

const NO_LIMITS: ScanLimits = { maxAttributes: Infinity, maxValueBytes: Infinity };
const KEY_VALUE = 'opentelemetry.proto.common.v1.KeyValue';
/** A message's fields by number (an array: field numbers in OTLP are small). */
type MessageRules = FieldRule[];

/** Where the items are: the repeated field, by message type, whose occurrences count. */
const ITEM_FIELD: Record<Signal, [string, string]> = {
  logs: ['opentelemetry.proto.logs.v1.ScopeLogs', 'logRecords'],
  traces: ['opentelemetry.proto.trace.v1.ScopeSpans', 'spans'],
  metrics: ['', ''], // data points sit under five kinds of metric: counted below
};
const DATA_POINT_PARENTS = new Set(
  ['Gauge', 'Sum', 'Histogram', 'ExponentialHistogram', 'Summary'].map((n) => `opentelemetry.proto.metrics.v1.${n}`),
);

function rulesOf(type: protobuf.Type, signal: Signal, seen: Map<protobuf.Type, MessageRules>): MessageRules {
  const known = seen.get(type);
  if (known) return known;
  const rules: MessageRules = [];
  seen.set(type, rules);
  const fullName = type.fullName.replace(/^\./, '');
  for (const field of type.fieldsArray) {
    field.resolve();
    const item =
      (fullName === ITEM_FIELD[signal][0] && field.name === ITEM_FIELD[signal][1]) ||
      (signal === 'metrics' && DATA_POINT_PARENTS.has(fullName) && field.name === 'dataPoints');
    const resolved = field.resolvedType;
    if (resolved && 'fieldsArray' in resolved) {
      const attribute = resolved.fullName.replace(/^\./, '') === KEY_VALUE;
      rules[field.id] = {
        wire: WIRE.LEN,
        packable: false,
        string: false,
        message: rulesOf(resolved, signal, seen),
        item,
        attribute,
      };
    } else {
      // An enum is a varint.
      const wire = resolved ? WIRE.VARINT : SCALAR_WIRE[field.type];
      if (wire === undefined) throw new Error(`scan: no wire type for ${fullName}.${field.name} (${field.type})`);
      rules[field.id] = {
        wire,
        packable: field.repeated && wire !== WIRE.LEN,
        string: field.type === 'string',
        item,
        attribute: false,
      };
    }
  }
  return rules;
}

const RULES: Record<Signal, MessageRules> = {
  logs: rulesOf(requestType('logs'), 'logs', new Map()),
  metrics: rulesOf(requestType('metrics'), 'metrics', new Map()),
  traces: rulesOf(requestType('traces'), 'traces', new Map()),
};

/** One cursor per body: a nested message narrows `end` while it is walked (no allocation). */
class Cursor {
  /** For reading four bytes at once (the ASCII check). */
  readonly view: DataView;

  constructor(
    readonly buf: Uint8Array,
    public pos: number,
    public end: number,
  ) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  varint(): number {
    // Most tags and lengths take one byte.
    const first = this.buf[this.pos];
    if (first !== undefined && first < 0x80 && this.pos < this.end) {
      this.pos += 1;
      return first;
    }
    let result = 0;
    let shift = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new DecodeError('body is not a protobuf: a varint runs past its end');
      const b = this.buf[this.pos++]!;
      if (shift < 28) result |= (b & 0x7f) << shift;
      else result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
      shift += 7;
    }
    throw new DecodeError('body is not a protobuf: a varint longer than 10 bytes');
  }

  /** A field tag, as protobufjs reads one: at most five bytes, a 32-bit value. */
  tag(): number {
    const start = this.pos;
    const value = this.varint();
    const bytes = this.pos - start;
    if (bytes > 5 || (bytes === 5 && (this.buf[start + 4]! & 0x70) !== 0))
      throw new DecodeError('body is not a protobuf: invalid tag encoding');
    return value >>> 0;
  }

  /** A length prefix, as protobufjs reads one: at most five bytes, under 2^31. */
  size(): number {
    const start = this.pos;
    const value = this.varint();
    const bytes = this.pos - start;
    if (bytes > 5 || (bytes === 5 && this.buf[start + 4]! > 7))
      throw new DecodeError('body is not a protobuf: invalid length encoding');
    return value;
  }

  skip(n: number): void {
    if (n < 0 || this.pos + n > this.end) throw new DecodeError('body is not a protobuf: a field runs past its end');
    this.pos += n;
  }

  length(): number {
    const n = this.size();
    if (this.pos + n > this.end) throw new DecodeError('body is not a protobuf: a length runs past its end');
    return n;
  }
}

/** Skips one field of an unknown number by its wire type (a group ends with its own number). */
function skipUnknown(c: Cursor, wire: number, depth: number, id = 0): void {
  switch (wire) {
    case WIRE.VARINT:
      c.varint();
      return;
    case WIRE.I64:
      c.skip(8);
      return;
    case WIRE.LEN:
      c.skip(c.length());
      return;
    case WIRE.I32:
      c.skip(4);
      return;
    case WIRE.SGROUP:
      if (depth > 100) throw new DecodeError('body is not a protobuf: groups nested too deep');
      for (;;) {
        const tag = c.tag();
        if ((tag & 7) === WIRE.EGROUP) {
          if (tag >>> 3 !== id) throw new DecodeError('body is not a protobuf: a group ends with another number');
          return;
        }
        skipUnknown(c, tag & 7, depth + 1, tag >>> 3);
      }
    default:
      throw new DecodeError(`body is not a protobuf: invalid wire type ${wire}`);
  }
}

/** Strings this long or shorter are checked in JS; longer ones by Node's native check. */
const SHORT_STRING = 256;

/**
 * Whether buf[start, end) is UTF-8. Most strings in Claude Code's events are short and ASCII:
 * a JS loop finds that without creating a view (which costs more than checking a short string
 * byte by byte); otherwise Node's native check decides.
 */
function isUtf8Range(c: Cursor, start: number, end: number): boolean {
  if (end - start > SHORT_STRING) return isUtf8(c.buf.subarray(start, end));
  let bits = 0;
  let i = start;
  for (; i + 4 <= end; i += 4) bits |= c.view.getInt32(i);
  for (; i < end; i++) bits |= c.buf[i]!;
  return (bits & 0x80808080) === 0 || isUtf8(c.buf.subarray(start, end));
}

/** Walks one message in [c.pos, c.end); returns the items counted inside it. */
function walk(c: Cursor, rules: MessageRules, depth: number, limits: ScanLimits): number {
  if (depth > 64) throw new DecodeError('body is not a protobuf: messages nested too deep');
  let items = 0;
  let attributes = 0;
  while (c.pos < c.end) {
    const tag = c.tag();
    const id = tag >>> 3;
    const wire = tag & 7;
    if (id === 0) throw new DecodeError('body is not a protobuf: field number 0');
    const rule = rules[id];
    if (rule === undefined || (wire !== rule.wire && !(rule.packable && wire === WIRE.LEN))) {
      // An unknown number, or (as protobufjs does, and the protobuf spec asks) a known number
      // in another wire type: an unknown field, skipped.
      skipUnknown(c, wire, 0, id);
      continue;
    }
    if (rule.item) items += 1;
    if (rule.attribute && ++attributes > limits.maxAttributes) {
      throw new DecodeError(
        `a message has more than ${limits.maxAttributes} attributes (the bridge's BRIDGE_MAX_ATTRIBUTES)`,
      );
    }
    if (wire === WIRE.LEN) {
      const n = c.length();
      const end = c.pos + n;
      if (rule.message) {
        const outer = c.end;
        c.end = end;
        items += walk(c, rule.message, depth + 1, limits);
        c.end = outer;
      } else if (n > limits.maxValueBytes) {
        throw new DecodeError(
          `a value of ${n} bytes is larger than ${limits.maxValueBytes} (the bridge's BRIDGE_MAX_VALUE_BYTES)`,
        );
      } else if (rule.string && !isUtf8Range(c, c.pos, end)) {
        throw new DecodeError(`body is not a protobuf: field ${id} is not UTF-8`);
      }
      c.pos = end;
    } else {
      skipUnknown(c, wire, 0);
    }
  }
  if (c.pos !== c.end) throw new DecodeError('body is not a protobuf: a message runs past its end');
  return items;
}

/** Checks a protobuf export request and counts its items (log records, spans, data points). */
export function scanExportRequest(signal: Signal, body: Uint8Array, limits: ScanLimits = NO_LIMITS): number {
  return walk(new Cursor(body, 0, body.length), RULES[signal], 0, limits);
}
