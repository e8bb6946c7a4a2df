/**
 * Connections to Redis: a single server, or a Redis Cluster reached through seed nodes.
 *
 * Producers fail fast while Redis is away (so the receiver can answer 503 at once); consumers
 * wait for it (BullMQ needs maxRetriesPerRequest: null for its blocking calls).
 */
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';

/** What every stage takes: either kind of connection (both run scripts and pipelines alike). */
export type RedisClient = Redis | Cluster;

export type ConnectionRole = 'producer' | 'consumer';

export interface RedisTarget {
  /** redis:// or rediss:// URL; with `cluster`, any node of the cluster (a seed). */
  url: string;
  cluster?: boolean;
}

/**
 * How long a producer's command may wait for its reply. A command already sent when the
 * connection drops is kept by ioredis to be sent again once it reconnects, whatever
 * maxRetriesPerRequest says: without a bound, a request (or /readyz) that was waiting on Redis
 * when it went away would hang until it came back, instead of answering 503.
 */
const PRODUCER_COMMAND_TIMEOUT_MS = 5_000;

function roleOptions(role: ConnectionRole): RedisOptions {
  return {
    maxRetriesPerRequest: role === 'consumer' ? null : 1,
    enableOfflineQueue: role === 'consumer',
    connectTimeout: 5_000,
    ...(role === 'producer' && { commandTimeout: PRODUCER_COMMAND_TIMEOUT_MS }),
  };
}

export function connectRedis(target: RedisTarget, role: ConnectionRole, extra: RedisOptions = {}): RedisClient {
  if (!target.cluster) return new Redis(target.url, { ...roleOptions(role), ...extra });
  const seed = new URL(target.url);
  const redisOptions: RedisOptions = { ...roleOptions(role), ...extra };
  if (seed.password) redisOptions.password = decodeURIComponent(seed.password);
  if (seed.username) redisOptions.username = decodeURIComponent(seed.username);
  if (seed.protocol === 'rediss:') redisOptions.tls = {};
  const options: ClusterOptions = {
    redisOptions,
    enableOfflineQueue: role === 'consumer',
    // Cluster-wide retries follow the role too: producers give up at once.
    clusterRetryStrategy: role === 'consumer' ? (times) => Math.min(times * 200, 2_000) : () => null,
    // A slot moving between masters (a reshard) answers a command over several of its keys with
    // ASK, then TRYAGAIN, until its keys have moved; ioredis tries again (after a TRYAGAIN:
    // retryDelayOnTryAgain later, at a random master, so each wait costs about two redirections)
    // and gives up after maxRedirections: by default 16, about a second. A consumer waits a
    // slot's move out for about 4 s rather than fail: BullMQ does not retry its own bookkeeping
    // (a job moved to completed or to a retry), and a job it could not move stalls for 30 s, then
    // fails on its second stall. Producers keep the default: the receiver answers 503 at once.
    ...(role === 'consumer' && { retryDelayOnTryAgain: 100, maxRedirections: 64 }),
  };
  return new Cluster([{ host: seed.hostname, port: Number(seed.port || 6379) }], options);
}

/** Whether the connection is up and usable now. */
export const isReady = (client: RedisClient) => client.status === 'ready';
