/**
 * What the metrics' forwarding keeps in Redis (keys.ts, `metricsKeys`): each cumulative
 * series' last point, shared by every worker and surviving restarts, and each job's record:
 * the deltas it was given and how many of its requests LLMFlow took.
 */
import path from 'node:path';
import { defineScript, metricsKeys, type RedisClient } from '@ccbridge/redis';
import type { CumulativePoint } from './points';

const LUA = path.join(__dirname, '..', 'lua');

/** A job's record lives past any retry of the job (failed jobs are kept a week). */
const RECORD_TTL_S = 8 * 24 * 3600;
/** Once a job is done its record is only a guard against the job being run again: a day. */
const DONE_TTL_S = 24 * 3600;
/**
 * A cumulative series is forgotten a week after its last point. Claude Code exports every
 * minute while it runs, so only a process silent for a week (its machine asleep) would come
 * back to a forgotten series, and count its total once more.
 */
const SERIES_TTL_S = 7 * 24 * 3600;

type DeltasClient = RedisClient & {
  ccbridgeMetricDeltas(...args: (string | number)[]): Promise<[string | null, string | null, number]>;
};

export interface JobRecord {
  /** deltas.lua's entry for each cumulative point of the job, in its order. */
  prev: string[];
  /** Requests of the job LLMFlow already took. */
  posted: number;
  /** This call made the record (the job's first attempt to get this far). */
  made: boolean;
}

export class MetricsStore {
  private readonly keys = metricsKeys();

  constructor(private readonly redis: RedisClient) {
    defineScript(redis, 'ccbridgeMetricDeltas', LUA, 'deltas.lua', 1);
  }

  /** The job's record: made once (its cumulative points advance their series), read back on every retry. */
  async record(jobId: string, points: CumulativePoint[]): Promise<JobRecord> {
    const args = points.flatMap((p) => [p.series, p.timeUnixNano, p.value]);
    const [prev, posted, made] = await (this.redis as DeltasClient).ccbridgeMetricDeltas(
      this.keys.job + jobId,
      RECORD_TTL_S,
      this.keys.series,
      SERIES_TTL_S,
      ...args,
    );
    return { prev: JSON.parse(prev ?? '[]') as string[], posted: Number(posted ?? 0), made: made === 1 };
  }

  /** LLMFlow took the job's next request. */
  async posted(jobId: string): Promise<void> {
    await this.redis.hincrby(this.keys.job + jobId, 'posted', 1);
  }

  /** The job is done: its record stays a day, so a run of it again posts nothing. */
  async done(jobId: string): Promise<void> {
    await this.redis.expire(this.keys.job + jobId, DONE_TTL_S);
  }
}
