export { forwardMetrics, type ForwardDeps, type ForwardSummary, type MetricsSink } from './forward';
export { MetricsStore, type JobRecord } from './store';
export {
  Temporality,
  chunkRequest,
  convertRequest,
  cumulativePoints,
  deltaOf,
  pointsIn,
  type CumulativePoint,
  type Converted,
  type Metric,
  type NumberPoint,
  type RedactAttributes,
} from './points';
