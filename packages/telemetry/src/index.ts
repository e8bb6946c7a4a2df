export { bridgeMetrics, observeGauge, METER_NAME, type RefusalReason, type Transport } from './metrics';
export { startTelemetry, SERVICE_NAME, type Telemetry, type TelemetryOptions } from './sdk';
