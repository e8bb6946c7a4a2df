/**
 * OTLP/HTTP bodies to the canonical form (types.ts) and back.
 *
 * protobufjs loads the schema in ../proto at start-up (reflection, no generated code), so
 * both wire formats go through the same message types: a JSON body is checked and converted
 * by the same `fromObject` that shapes decoded protobuf, and every batch reaches the queue in
 * one form whatever the sender spoke.
 */
import path from 'node:path';
import protobuf from 'protobufjs';
import { PermanentError } from '@ccbridge/errors';
import type { ExportRequestBySignal, Signal } from './types';

export type WireFormat = 'protobuf' | 'json';

export const CONTENT_TYPES: Record<WireFormat, string> = {
  protobuf: 'application/x-protobuf',
  json: 'application/json',
};

/** A body that does not decode as the message its path asks for (an OTLP/HTTP 400). */
export class DecodeError extends PermanentError {
  override name = 'DecodeError';
}

const PROTO_DIR = path.join(__dirname, '..', 'proto');
const SERVICE: Record<Signal, { pkg: string; name: string }> = {
  logs: { pkg: 'logs', name: 'Logs' },
  metrics: { pkg: 'metrics', name: 'Metrics' },
  traces: { pkg: 'trace', name: 'Trace' },
};

/**
 * A message's oneof (an attribute's AnyValue, a data point's value) is set through a setter that
 * deletes every other member of the oneof, present or not: `delete` of an absent property still
 * costs a runtime call, and protobufjs's decoding of a logs batch spent about 40% of its time
 * there. The same rule, deleting only the members the message holds, takes a quarter off
 * decodeExportRequest (test/bench: 0.34 to 0.26 ms for the worker-cost load's logs batch).
 * (protobufjs reads `util.oneOfSetter` when it first builds a message type, after this.)
 */
protobuf.util.oneOfSetter = (fieldNames: string[]) =>
  function setOneOf(this: Record<string, unknown>, name: string | undefined) {
    for (const field of fieldNames) if (field !== name && Object.hasOwn(this, field)) delete this[field];
  };

export const root = new protobuf.Root();
root.resolvePath = (_origin, target) => path.join(PROTO_DIR, path.basename(target));
root.loadSync([...Object.values(SERVICE).map((s) => `collector_${s.pkg}.proto`), 'status.proto']);

const messageType = (signal: Signal, kind: 'Request' | 'Response') =>
  root.lookupType(
    `opentelemetry.proto.collector.${SERVICE[signal].pkg}.v1.Export${SERVICE[signal].name}Service${kind}`,
  );
const REQUEST = {
  logs: messageType('logs', 'Request'),
  metrics: messageType('metrics', 'Request'),
  traces: messageType('traces', 'Request'),
};
const RESPONSE = {
  logs: messageType('logs', 'Response'),
  metrics: messageType('metrics', 'Response'),
  traces: messageType('traces', 'Response'),
};
const STATUS = root.lookupType('google.rpc.Status');

/** The protobufjs type of a signal's export request (scan.ts walks the wire against it). */
export const requestType = (signal: Signal): protobuf.Type => REQUEST[signal];

/** The fields that OTLP/JSON writes as hex where proto3's JSON mapping would use base64. */
const ID_FIELDS = new Set(['traceId', 'spanId', 'parentSpanId']);
const ID_HEX_LENGTH: Record<string, number[]> = { traceId: [0, 32], spanId: [0, 16], parentSpanId: [0, 16] };

const TO_OBJECT: protobuf.IConversionOptions = { longs: String, enums: Number, bytes: String, defaults: false };

/**
 * How deep an OTLP/JSON body may nest (objects and arrays): a request's own structure takes 9
 * levels to a log record's attribute value, and each level of an array or kvlist value takes
 * 3 more; the wire scan bounds protobuf messages at 64. Deeper bodies are refused (400), before
 * a recursive walk would run out of stack (a 500).
 */
const MAX_JSON_DEPTH = 200;

/**
 * Rewrites id fields in place throughout a message tree; `convert` may throw DecodeError.
 * (for..in and indexed loops: on a JSON body's tree, Object.entries' arrays took ten times as long.)
 */
function rewriteIds(node: unknown, convert: (key: string, value: string) => string, depth = 0): void {
  if (depth > MAX_JSON_DEPTH) throw new DecodeError(`body nests deeper than ${MAX_JSON_DEPTH} levels`);
  if (Array.isArray(node)) {
    for (let i = 0; i < node.length; i++) {
      const item: unknown = node[i];
      if (item !== null && typeof item === 'object') rewriteIds(item, convert, depth + 1);
    }
    return;
  }
  const obj = node as Record<string, unknown>;
  for (const key in obj) {
    const value = obj[key];
    if (value !== null && typeof value === 'object') rewriteIds(value, convert, depth + 1);
    else if (typeof value === 'string' && ID_FIELDS.has(key)) obj[key] = convert(key, value);
  }
}

const base64ToHex = (_key: string, value: string) => Buffer.from(value, 'base64').toString('hex');

function hexToBase64(key: string, value: string): string {
  const lengths = ID_HEX_LENGTH[key] ?? [];
  if (!/^[0-9a-fA-F]*$/.test(value) || !lengths.includes(value.length)) {
    throw new DecodeError(
      `${key} ${JSON.stringify(value.slice(0, 40))} is not ${lengths[1]} hex digits (OTLP/JSON writes ids as hex, not base64)`,
    );
  }
  return Buffer.from(value, 'hex').toString('base64');
}

function toCanonical<S extends Signal>(signal: S, message: protobuf.Message): ExportRequestBySignal[S] {
  const obj = REQUEST[signal].toObject(message, TO_OBJECT);
  rewriteIds(obj, base64ToHex);
  return obj;
}

/** An OTLP/JSON body as a protobufjs message of the signal's request type; throws DecodeError. */
function messageFromJson(signal: Signal, body: Uint8Array): protobuf.Message {
  const type = REQUEST[signal];
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(body).toString('utf8'));
  } catch (err) {
    throw new DecodeError(`body is not valid JSON: ${(err as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new DecodeError(`body is not a JSON object (an OTLP/JSON ${type.name})`);
  }
  rewriteIds(parsed, hexToBase64);
  try {
    return type.fromObject(parsed);
  } catch (err) {
    throw new DecodeError(`body is not an OTLP/JSON ${type.name}: ${(err as Error).message}`);
  }
}

/** Decodes an OTLP/HTTP request body (already inflated) for the given signal. */
export function decodeExportRequest<S extends Signal>(
  signal: S,
  body: Uint8Array,
  format: WireFormat,
): ExportRequestBySignal[S] {
  const type = REQUEST[signal];
  if (format === 'protobuf') {
    let message: protobuf.Message;
    try {
      message = type.decode(body);
    } catch (err) {
      throw new DecodeError(`body is not a protobuf ${type.name}: ${(err as Error).message}`);
    }
    return toCanonical(signal, message);
  }
  return toCanonical(signal, messageFromJson(signal, body));
}

/**
 * An OTLP/JSON request body as protobuf, with its item count: what the receiver stores. Checked
 * as decodeExportRequest checks it, without building the canonical tree only to encode it again.
 */
export function jsonToProtobuf(signal: Signal, body: Uint8Array): { protobuf: Uint8Array; items: number } {
  const message = messageFromJson(signal, body);
  // The message's fields carry the canonical names, so it counts like the canonical tree.
  return {
    protobuf: REQUEST[signal].encode(message).finish(),
    items: countItems(signal, message as unknown as ExportRequestBySignal[Signal]),
  };
}

/** Encodes an export request from the canonical form (for tests, tools and forwarding). */
export function encodeExportRequest(signal: Signal, request: object, format: WireFormat): Uint8Array {
  if (format === 'json') return Buffer.from(JSON.stringify(request));
  const copy = structuredClone(request);
  rewriteIds(copy, hexToBase64);
  const type = REQUEST[signal];
  return type.encode(type.fromObject(copy)).finish();
}

export interface PartialSuccess {
  rejected: number;
  errorMessage: string;
}

const REJECTED_FIELD: Record<Signal, string> = {
  logs: 'rejectedLogRecords',
  metrics: 'rejectedDataPoints',
  traces: 'rejectedSpans',
};

/** The body of a 200 answer: an Export*ServiceResponse in the request's own format. */
export function encodeExportResponse(signal: Signal, format: WireFormat, partial?: PartialSuccess): Uint8Array {
  const obj = partial
    ? { partialSuccess: { [REJECTED_FIELD[signal]]: partial.rejected, errorMessage: partial.errorMessage } }
    : {};
  if (format === 'json') return Buffer.from(JSON.stringify(obj));
  const type = RESPONSE[signal];
  return type.encode(type.fromObject(obj)).finish();
}

/** gRPC status codes used in google.rpc.Status bodies, by HTTP status. */
const GRPC_CODE_BY_HTTP: Record<number, number> = {
  400: 3,
  404: 12,
  405: 12,
  413: 8,
  415: 3,
  429: 8,
  500: 13,
  503: 14,
};

/** The body of an error answer: a google.rpc.Status in the request's format. */
export function encodeStatus(format: WireFormat, httpStatus: number, message: string): Uint8Array {
  const obj = { code: GRPC_CODE_BY_HTTP[httpStatus] ?? 2, message };
  if (format === 'json') return Buffer.from(JSON.stringify(obj));
  return STATUS.encode(STATUS.fromObject(obj)).finish();
}

/** How many items (log records, data points, spans) a request carries. */
export function countItems(signal: Signal, request: ExportRequestBySignal[Signal]): number {
  let n = 0;
  if (signal === 'logs') {
    for (const rl of (request as ExportRequestBySignal['logs']).resourceLogs ?? []) {
      for (const sl of rl.scopeLogs ?? []) n += sl.logRecords?.length ?? 0;
    }
  } else if (signal === 'traces') {
    for (const rs of (request as ExportRequestBySignal['traces']).resourceSpans ?? []) {
      for (const ss of rs.scopeSpans ?? []) n += ss.spans?.length ?? 0;
    }
  } else {
    for (const rm of (request as ExportRequestBySignal['metrics']).resourceMetrics ?? []) {
      for (const sm of rm.scopeMetrics ?? []) {
        for (const metric of sm.metrics ?? []) n += dataPointCount(metric);
      }
    }
  }
  return n;
}

function dataPointCount(metric: unknown): number {
  const m = metric as Record<string, { dataPoints?: unknown[] } | undefined>;
  const data = m.gauge ?? m.sum ?? m.histogram ?? m.exponentialHistogram ?? m.summary;
  return data?.dataPoints?.length ?? 0;
}
