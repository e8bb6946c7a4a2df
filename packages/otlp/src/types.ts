/**
 * The canonical form of OTLP data inside the bridge: the OTLP/JSON encoding (camelCase keys,
 * trace and span ids as lowercase hex, 64-bit integers as decimal strings, enums as numbers).
 * Both wire formats decode to it, the worker reads the queued batches into it (the queue holds
 * them as received, gzip'd protobuf: packages/queue/src/stored.ts), and the exporter sends it.
 */

export type Signal = 'logs' | 'metrics' | 'traces';

export interface AnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string | number;
  doubleValue?: number;
  arrayValue?: { values?: AnyValue[] };
  kvlistValue?: { values?: KeyValue[] };
  bytesValue?: string;
}

export interface KeyValue {
  key: string;
  value?: AnyValue;
}

export interface Resource {
  attributes?: KeyValue[];
  droppedAttributesCount?: number;
}

export interface InstrumentationScope {
  name?: string;
  version?: string;
  attributes?: KeyValue[];
}

export interface LogRecord {
  timeUnixNano?: string;
  observedTimeUnixNano?: string;
  severityNumber?: number;
  severityText?: string;
  body?: AnyValue;
  attributes?: KeyValue[];
  traceId?: string;
  spanId?: string;
  eventName?: string;
}

export interface ResourceLogs {
  resource?: Resource;
  scopeLogs?: { scope?: InstrumentationScope; logRecords?: LogRecord[]; schemaUrl?: string }[];
  schemaUrl?: string;
}

export const SpanKind = { UNSPECIFIED: 0, INTERNAL: 1, SERVER: 2, CLIENT: 3, PRODUCER: 4, CONSUMER: 5 } as const;
export const StatusCode = { UNSET: 0, OK: 1, ERROR: 2 } as const;

export interface SpanEvent {
  timeUnixNano: string;
  name: string;
  attributes?: KeyValue[];
}

export interface Span {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  traceState?: string;
  flags?: number;
  name: string;
  kind?: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes?: KeyValue[];
  events?: SpanEvent[];
  links?: unknown[];
  status?: { code?: number; message?: string };
}

export interface ScopeSpans {
  scope?: InstrumentationScope;
  spans?: Span[];
  schemaUrl?: string;
}

export interface ResourceSpans {
  resource?: Resource;
  scopeSpans?: ScopeSpans[];
  schemaUrl?: string;
}

/** Metrics pass through the bridge untouched, so only their outer shape is typed. */
export interface ResourceMetrics {
  resource?: Resource;
  scopeMetrics?: { scope?: InstrumentationScope; metrics?: unknown[] }[];
}

export interface ExportLogsRequest {
  resourceLogs?: ResourceLogs[];
}
export interface ExportTraceRequest {
  resourceSpans?: ResourceSpans[];
}
export interface ExportMetricsRequest {
  resourceMetrics?: ResourceMetrics[];
}

export interface ExportRequestBySignal {
  logs: ExportLogsRequest;
  metrics: ExportMetricsRequest;
  traces: ExportTraceRequest;
}
export type ExportRequest = ExportRequestBySignal[Signal];
