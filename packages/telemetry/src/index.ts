/**
 * The bridge's own telemetry, as the packages use it: the metrics table and the tracing helpers,
 * on @opentelemetry/api only. The SDK that records them is started by the process alone
 * (`@ccbridge/telemetry/sdk`), so a package or a tool that counts something does not load it.
 */
export { bridgeMetrics, observeGauge, METER_NAME, type RefusalReason, type Transport } from './metrics';
export { SERVICE_NAME } from './names';
export { SpanKind, currentTraceparent, inSpan, type SpanOptions } from './tracing';
