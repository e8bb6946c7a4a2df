/**
 * Group commit for the producer: batches that arrive while a job is being added wait for it,
 * then go to the queue together, as one job.
 *
 * Adding a job costs a Lua script in Redis and an encoding in the receiver whatever it holds;
 * under load that, not the data, bounds how many requests a receiver takes. Stored batches are
 * gzip'd protobuf, and both formats concatenate: gzip members in a row inflate to their
 * contents in a row, and protobuf messages in a row parse as one message whose repeated
 * fields (an export request's resource batches) hold them all. So a group is its parts one
 * after another, and the worker reads it as one request. A lone request (an idle receiver) is
 * added at once, as before; nothing waits on a timer.
 */
import type { Signal } from '@ccbridge/otlp';

/** One batch as the producer stores it: its gzip'd protobuf and what it counts. */
export interface GroupPart {
  gzipped: Uint8Array;
  items: number;
  /** Its protobuf's size: a group stays below a bound in decoded bytes, which is what a worker holds. */
  protobufBytes: number;
  /** The trace of the request that brought it (the bridge's own tracing). */
  traceparent?: string;
}

export interface Group {
  parts: GroupPart[];
  items: number;
  protobufBytes: number;
}

interface Waiting extends Group {
  settle: Array<{ resolve: () => void; reject: (err: unknown) => void }>;
}

/** Adds a group as one job; resolves once it is stored. */
export type AddGroup = (signal: Signal, group: Group) => Promise<void>;

export class GroupCommit {
  /** Per signal: whether an add is in flight, and the group waiting for it. */
  private readonly lanes = new Map<Signal, { busy: boolean; next?: Waiting }>();

  /** `maxProtobufBytes`: a group is not grown past this (one part always goes, however large). */
  constructor(
    private readonly add: AddGroup,
    private readonly maxProtobufBytes: number,
  ) {}

  /** Resolves once the part is stored (in its group's job); rejects if that add fails. */
  commit(signal: Signal, part: GroupPart): Promise<void> {
    let lane = this.lanes.get(signal);
    if (!lane) this.lanes.set(signal, (lane = { busy: false }));
    return new Promise((resolve, reject) => {
      if (lane.next && lane.next.protobufBytes + part.protobufBytes > this.maxProtobufBytes) {
        // The waiting group is full: it goes now, beside the add in flight.
        const full = lane.next;
        lane.next = undefined;
        void this.flush(signal, full);
      }
      const next = (lane.next ??= { parts: [], items: 0, protobufBytes: 0, settle: [] });
      next.parts.push(part);
      next.items += part.items;
      next.protobufBytes += part.protobufBytes;
      next.settle.push({ resolve, reject });
      if (!lane.busy) this.drain(signal, lane);
    });
  }

  /** Adds the lane's waiting group, then the one that gathered meanwhile, until none waits. */
  private drain(signal: Signal, lane: { busy: boolean; next?: Waiting }): void {
    const group = lane.next;
    if (!group) return;
    lane.next = undefined;
    lane.busy = true;
    void this.flush(signal, group).finally(() => {
      lane.busy = false;
      this.drain(signal, lane);
    });
  }

  private async flush(signal: Signal, group: Waiting): Promise<void> {
    try {
      await this.add(signal, group);
      for (const s of group.settle) s.resolve();
    } catch (err) {
      for (const s of group.settle) s.reject(err);
    }
  }
}
