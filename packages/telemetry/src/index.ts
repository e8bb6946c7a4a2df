export { bridgeMetrics, observeGauge, METER_NAME, type RefusalReason, type Transport } from './metrics';
export { SERVICE_NAME } from './names';
export { startTelemetry, type Telemetry, type TelemetryOptions } from './sdk';
export { SpanKind, currentTraceparent, inSpan, type SpanOptions } from './tracing';
