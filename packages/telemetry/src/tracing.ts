/**
 * Traces of the bridge's own work: receive → enqueue → process → export, one trace per batch
 * across the ingest and the worker. The queue job carries the W3C `traceparent` of the request
 * that stored it; the worker's span continues that trace, and links the other requests when
 * several shared one job (group commit). Spans are recorded only when the bridge exports its own
 * traces (OTEL_TRACES_EXPORTER=otlp, see @ccbridge/config's self-telemetry); otherwise every call
 * here is a no-op of the API.
 */
import {
  INVALID_SPAN_CONTEXT,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  context,
  propagation,
  trace,
  type Attributes,
  type Link,
  type Span,
} from '@opentelemetry/api';
import { SERVICE_NAME } from './names';

export { SpanKind };

const tracer = () => trace.getTracer(SERVICE_NAME);

/**
 * Whether the bridge traces its own work (NodeSDK was started with traces). Off, a span
 * would record nothing, so none is made: no context is entered on the hot path.
 */
let recording = false;
export function recordSpans(on: boolean): void {
  recording = on;
}

/** The active span's context as a W3C traceparent, when a span is being recorded. */
export function currentTraceparent(): string | undefined {
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier.traceparent;
}

const contextOf = (traceparent: string) => propagation.extract(ROOT_CONTEXT, { traceparent });

export interface SpanOptions {
  kind?: SpanKind;
  attributes?: Attributes;
  /** Continue the trace of this traceparent (a job's), instead of the active context. */
  parent?: string;
  /** Link these traceparents (other requests of the same job). */
  links?: string[];
}

/** Runs `fn` inside a span; an error thrown ends the span as ERROR and is thrown on. */
export async function inSpan<T>(name: string, options: SpanOptions, fn: (span: Span) => Promise<T>): Promise<T> {
  if (!recording) return fn(trace.wrapSpanContext(INVALID_SPAN_CONTEXT));
  const parent = options.parent ? contextOf(options.parent) : context.active();
  const links: Link[] = (options.links ?? []).flatMap((tp) => {
    const linked = trace.getSpanContext(contextOf(tp));
    return linked ? [{ context: linked }] : [];
  });
  return tracer().startActiveSpan(
    name,
    { kind: options.kind ?? SpanKind.INTERNAL, attributes: options.attributes, links },
    parent,
    async (span) => {
      try {
        return await fn(span);
      } catch (err) {
        span.recordException(err as Error);
        span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
        throw err;
      } finally {
        span.end();
      }
    },
  );
}
