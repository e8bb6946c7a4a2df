/**
 * The process stage's floor (issue 23, item 4): this checkout's worker code on the same load with
 * nothing kept between batches. Each queued logs batch (gzip'd, as the queue holds it) is inflated,
 * decoded and run through processBatch in this process; a store that keeps nothing hands every
 * span the batch holds straight back (released under its turn, or its session for a subagent's),
 * and the export only serializes the request body LLMFlow would get. No Redis, no queue, no
 * network, no metrics jobs, no roots: what any design of the process stage pays per batch before
 * it keeps state anywhere. Against the old worker's CPU per batch it bounds what moving the state
 * out of Redis alone can reach.
 */
import zlib from 'node:zlib';
import { decodeExportRequest, type ResourceSpans } from '@ccbridge/otlp';
import {
  CALL_HOLDER,
  SENT,
  claudeEventsOf,
  processBatch,
  type PlacedAt,
  type BatchProcessorDeps,
  type BatchWork,
  type LifecycleStore,
  type ShardOutcome,
  type TurnCloser,
} from '@ccbridge/claude-events';
import { createLogger } from '@ccbridge/log';

export interface StageFloor {
  /** Worker CPU (user + system) per logs batch, ms. */
  msPerBatch: number;
  /** Distinct span ids serialized per CPU-second. */
  distinctSpansPerCpuSecond: number;
  /**
   * Of msPerBatch, what the worker does to a batch before its process stage: inflating, decoding
   * and telling Claude Code's events (claudeEventsOf). The worker outside the stage (the bench's
   * drain without Claude Code events) does it too, so the two add up less this.
   */
  sharedMsPerBatch: number;
}

/** Every held span of a batch's work, handed straight back (an Agent call's as its holder's). */
function everythingReleased(work: BatchWork): ShardOutcome[] {
  const subagents = work.sessions.flatMap((s) => s.spans.map(([agent, id, held]) => ({ ...s, agent, id, held })));
  const release = [
    ...work.updates.flatMap((u) => u.held.filter(([, v]) => v !== SENT).map(([, held]) => ({ key: u.key, held }))),
    ...subagents.filter((s) => !s.agent.startsWith(CALL_HOLDER)).map((s) => ({ key: s.session, held: s.held })),
    ...work.pending.map((p) => ({ key: p.session, held: p.span })),
  ];
  const placed = subagents
    .filter((s) => s.agent.startsWith(CALL_HOLDER))
    .map((s) => ({ session: s.session, agent: s.agent, at: {} as PlacedAt, spans: [s.held], ids: [s.id] }));
  return [{ shard: 0, committed: false, late: [], release, placed, claimed: [] }];
}

/** The floor over `bodies` (protobuf ExportLogsServiceRequest), after one warm-up pass. */
export async function stageFloor(bodies: Uint8Array[]): Promise<StageFloor> {
  const queued = bodies.map((b) => zlib.gzipSync(b));
  const ids = new Set<string>();
  const store = {
    timelines: async () => new Map(),
    batch: async (work: BatchWork) => everythingReleased(work),
  } as unknown as LifecycleStore;
  const closer = { batchSize: 100, committed: async () => 0, giveBack: async () => {} } as unknown as TurnCloser;
  const deps: BatchProcessorDeps = {
    store,
    closer,
    log: createLogger('silent'),
    exportSpans: async (resourceSpans: ResourceSpans[]) => {
      Buffer.from(JSON.stringify({ resourceSpans }));
      for (const rs of resourceSpans)
        for (const ss of rs.scopeSpans ?? []) for (const s of ss.spans ?? []) ids.add(s.spanId);
    },
  };
  const pass = async () => {
    for (const [i, gzipped] of queued.entries()) {
      const request = decodeExportRequest('logs', zlib.gunzipSync(gzipped), 'protobuf');
      await processBatch(deps, 'logs', request, `floor-${i}`);
    }
  };
  const read = () => {
    for (const gzipped of queued) claudeEventsOf(decodeExportRequest('logs', zlib.gunzipSync(gzipped), 'protobuf'));
  };
  const cpuSecondsOf = async (run: () => unknown) => {
    await run(); // JIT warm-up: the worker's drain runs warm too
    ids.clear();
    const before = process.cpuUsage();
    await run();
    const used = process.cpuUsage(before);
    return (used.user + used.system) / 1e6;
  };
  const msPer = (seconds: number) => Math.round((seconds * 1000 * 100) / queued.length) / 100;
  const seconds = await cpuSecondsOf(pass);
  const distinct = ids.size;
  return {
    msPerBatch: msPer(seconds),
    distinctSpansPerCpuSecond: Math.round(distinct / seconds),
    sharedMsPerBatch: msPer(await cpuSecondsOf(read)),
  };
}
