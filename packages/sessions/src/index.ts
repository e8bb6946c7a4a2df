export { Reconciler, type ReconcilerOptions } from './reconciler';
export { LedgerStore, verdictOf, type Comparison, type SessionLedger, type Verdict } from './store';
export { FINDING_SPAN, findingSpan, totalsOf } from './finding';
export {
  WHATS,
  counterContributions,
  eventContributions,
  type CounterContribution,
  type EventContribution,
  type Sums,
  type What,
} from './sides';
export { drawnTurns, type DrawnRoot, type DrawnTurn } from './roots';
