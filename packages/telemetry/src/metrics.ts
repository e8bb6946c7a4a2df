/**
 * The bridge's own metrics, in one table, named as the Collector names its own
 * (`otelcol_receiver_accepted_log_records` → `ccbridge_receiver_accepted_log_records`). Prometheus
 * shows counters with `_total` and units as suffixes (`_seconds`).
 *
 * | metric                                          | kind      | attributes            | counted where                          |
 * |-------------------------------------------------|-----------|-----------------------|----------------------------------------|
 * | ccbridge_receiver_accepted_{log_records,spans,metric_points} | counter | transport | the receiver, once a batch is stored (metrics: acknowledged) |
 * | ccbridge_receiver_refused_{log_records,spans,metric_points}  | counter | transport, reason | the receiver, a batch it did not store (queue full, Redis away) |
 * | ccbridge_receiver_refused_requests              | counter   | transport, reason     | every refused request: decode, size, unsupported, auth, busy, queue_full, unavailable |
 * | ccbridge_queue_size                             | gauge     |                       | jobs not yet processed (the receiver's last reading) |
 * | ccbridge_queue_size_bytes, ccbridge_queue_capacity_bytes | gauge |                  | bytes they take, and the bound (BRIDGE_QUEUE_MAX_BYTES) |
 * | ccbridge_queue_oldest_age_seconds               | gauge     |                       | age of the oldest batch not yet processed (the worker's reading) |
 * | ccbridge_processor_events                       | counter   | event_name            | Claude Code events the worker processed |
 * | ccbridge_processor_late_events                  | counter   |                       | events that joined a turn already drawn |
 * | ccbridge_interactions_drawn                     | counter   | complete              | roots drawn (complete: true/false)     |
 * | ccbridge_interactions_open                      | gauge     |                       | turns not yet drawn, over every shard  |
 * | ccbridge_exporter_sent_spans                    | counter   |                       | spans LLMFlow took                     |
 * | ccbridge_exporter_trimmed_spans                 | counter   |                       | spans cut to fit                        |
 * | ccbridge_exporter_send_failed_spans             | counter   | reason                | spans LLMFlow refused (refused) or could not take (unavailable) |
 * | ccbridge_exporter_dead_lettered_spans           | counter   |                       | spans kept in the dead-letter store    |
 * | ccbridge_exporter_request_duration_seconds      | histogram | outcome               | each request to LLMFlow                |
 * | ccbridge_exporter_sent_metric_points            | counter   |                       | Claude Code's metric points LLMFlow took |
 * | ccbridge_exporter_dropped_metric_points         | counter   | reason                | points not forwarded: `unsupported` (LLMFlow has no /v1/metrics), `refused` (LLMFlow refused them), `disabled` (BRIDGE_FORWARD_METRICS off), `stale` (a cumulative point not later than one already turned into a delta) |
 * | ccbridge_worker_pauses                          | counter   |                       | pauses while LLMFlow is away           |
 * | ccbridge_sessions_compared                      | counter   | verdict               | sessions' events compared with their counters: ok, events_missing, counters_missing, mismatch |
 *
 * Instruments come from the global MeterProvider (@opentelemetry/api): without the SDK started
 * (tests, tools) they record nothing. The set is rebuilt when the global provider changes, as
 * a meter taken before the SDK registered would stay a no-op.
 */
import { metrics, type Attributes, type Counter, type Meter, type ObservableGauge } from '@opentelemetry/api';

export const METER_NAME = 'claude-code-llmflow-bridge';

type Signal = 'logs' | 'metrics' | 'traces';
export type Transport = 'http' | 'grpc';
export type RefusalReason = 'decode' | 'size' | 'unsupported' | 'auth' | 'busy' | 'queue_full' | 'unavailable';

const ITEMS: Record<Signal, string> = { logs: 'log_records', traces: 'spans', metrics: 'metric_points' };

function instruments(meter: Meter) {
  const counter = (name: string, description: string, unit = '1') =>
    meter.createCounter(`ccbridge_${name}`, { description, unit });
  const perSignal = (what: string, description: string) =>
    Object.fromEntries(
      Object.entries(ITEMS).map(([signal, items]) => [
        signal,
        counter(`receiver_${what}_${items}`, `${description} (${items.replace('_', ' ')})`),
      ]),
    ) as Record<Signal, Counter>;
  return {
    accepted: perSignal('accepted', 'Items the receiver stored in the queue, or acknowledged'),
    refused: perSignal('refused', 'Items the receiver could not store'),
    refusedRequests: counter('receiver_refused_requests', 'Requests the receiver refused, by reason'),
    events: counter('processor_events', 'Claude Code events the worker processed, by event name'),
    lateEvents: counter('processor_late_events', 'Events that joined a turn whose root was already drawn'),
    drawn: counter('interactions_drawn', 'Interaction roots drawn (complete or not)'),
    sent: counter('exporter_sent_spans', 'Spans LLMFlow took'),
    trimmed: counter('exporter_trimmed_spans', "Spans cut to fit BRIDGE_SPAN_MAX_BYTES or LLMFlow's body limit"),
    failed: counter('exporter_send_failed_spans', 'Spans LLMFlow refused or could not take, by reason'),
    deadLettered: counter('exporter_dead_lettered_spans', 'Spans kept in the dead-letter store'),
    requestDuration: meter.createHistogram('ccbridge_exporter_request_duration_seconds', {
      description: 'Requests to LLMFlow, by outcome',
      unit: 's',
      advice: { explicitBucketBoundaries: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] },
    }),
    pauses: counter('worker_pauses', 'Pauses of the worker while LLMFlow was unavailable'),
    compared: counter(
      'sessions_compared',
      "Sessions whose api_request events were compared with Claude Code's counters, by verdict",
    ),
    sentPoints: counter('exporter_sent_metric_points', "Claude Code's metric points LLMFlow took"),
    droppedPoints: counter(
      'exporter_dropped_metric_points',
      "Claude Code's metric points not forwarded to LLMFlow, by reason",
    ),
  };
}

let current: { provider: unknown; set: ReturnType<typeof instruments> } | undefined;

function set(): ReturnType<typeof instruments> {
  const provider = metrics.getMeterProvider();
  if (current?.provider !== provider) current = { provider, set: instruments(provider.getMeter(METER_NAME)) };
  return current.set;
}

const add = (c: Counter, n: number, attributes?: Attributes) => {
  if (n > 0) c.add(n, attributes);
};

/** What the pipeline counts; each call goes to the instrument of the table above. */
export const bridgeMetrics = {
  accepted: (signal: Signal, transport: Transport, items: number) => add(set().accepted[signal], items, { transport }),
  refused: (signal: Signal, transport: Transport, reason: RefusalReason, items: number) =>
    add(set().refused[signal], items, { transport, reason }),
  refusedRequest: (transport: Transport, reason: RefusalReason) => set().refusedRequests.add(1, { transport, reason }),
  events: (eventName: string, n = 1) => add(set().events, n, { event_name: eventName }),
  lateEvents: (n: number) => add(set().lateEvents, n),
  drawn: (complete: boolean, n = 1) => add(set().drawn, n, { complete }),
  sentSpans: (n: number) => add(set().sent, n),
  trimmedSpans: (n: number) => add(set().trimmed, n),
  failedSpans: (reason: 'refused' | 'unavailable', n: number) => add(set().failed, n, { reason }),
  deadLettered: (n: number) => add(set().deadLettered, n),
  exportRequest: (seconds: number, outcome: 'ok' | 'partial' | 'refused' | 'unavailable') =>
    set().requestDuration.record(seconds, { outcome }),
  pause: () => set().pauses.add(1),
  sessionCompared: (verdict: 'ok' | 'events_missing' | 'counters_missing' | 'mismatch') =>
    set().compared.add(1, { verdict }),
  sentMetricPoints: (n: number) => add(set().sentPoints, n),
  droppedMetricPoints: (reason: 'unsupported' | 'refused' | 'disabled' | 'stale', n: number) =>
    add(set().droppedPoints, n, { reason }),
};

/** A gauge read at each collection (queue depth, open interactions); undefined means "no reading". */
export function observeGauge(
  name: string,
  description: string,
  read: () => number | undefined | Promise<number | undefined>,
  unit = '1',
): ObservableGauge {
  const gauge = metrics.getMeter(METER_NAME).createObservableGauge(`ccbridge_${name}`, { description, unit });
  gauge.addCallback(async (result) => {
    // A reading that fails (Redis away) is left out of this collection, not an error.
    const value = await Promise.resolve()
      .then(read)
      .catch(() => undefined);
    if (value !== undefined && Number.isFinite(value)) result.observe(value);
  });
  return gauge;
}
