/** A BatchSink that records what the receiver hands it, and can be told to refuse or to wait. */
import type { Acceptance, BatchSink, ReceivedBatch } from '@ccbridge/ingest';
import type { Signal } from '@ccbridge/otlp';

export class RecordingSink implements BatchSink {
  batches: { signal: Signal; items: number }[] = [];
  acceptanceNow: Acceptance = 'ok';
  failEnqueue = false;
  /** While set, acceptance() waits for it: the request stays in flight. */
  hold: Promise<void> | undefined;
  waiting = 0;

  /** Signals the sink stores; the others are acknowledged without it. */
  queued = new Set<Signal>(['logs', 'traces', 'metrics']);

  queues(signal: Signal) {
    return this.queued.has(signal);
  }

  async acceptance() {
    if (this.hold) {
      this.waiting += 1;
      await this.hold;
      this.waiting -= 1;
    }
    return this.acceptanceNow;
  }

  async enqueue(signal: Signal, batch: ReceivedBatch) {
    if (this.failEnqueue) throw new Error('redis down');
    this.batches.push({ signal, items: batch.items });
  }
}
