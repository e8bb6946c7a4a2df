/** What every ccbridge command shares: its arguments, its settings, how it answers and exits. */
import { ConfigError, DEFAULT_REDIS_URL, loadConfig, type BridgeConfig } from '@ccbridge/config';
import { connectRedis, type RedisClient } from '@ccbridge/redis';

/** Exit statuses: 0 all well, 1 something is wrong or unreachable, 2 bad usage or setting. */
export const EXIT = { ok: 0, problem: 1, usage: 2 } as const;

export class UsageError extends Error {}

export interface Args {
  positional: string[];
  flags: Map<string, string | true>;
}

/** `--name value`, `--name=value` and bare `--flag`; `booleans` never take a value. */
export function parseArgs(
  argv: string[],
  booleans: readonly string[] = ['json', 'all', 'no-send', 'no-wait', 'help'],
): Args {
  const positional: string[] = [];
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (!m) positional.push(arg);
    else if (m[2] !== undefined) flags.set(m[1]!, m[2]);
    else if (booleans.includes(m[1]!)) flags.set(m[1]!, true);
    else if (i + 1 < argv.length) flags.set(m[1]!, argv[++i]!);
    else throw new UsageError(`--${m[1]} needs a value`);
  }
  return { positional, flags };
}

export const flag = (args: Args, name: string): string | undefined => {
  const v = args.flags.get(name);
  return typeof v === 'string' ? v : undefined;
};

export function settings(): BridgeConfig {
  try {
    return loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.message);
    throw err;
  }
}

/** A connection for a tool, not a service. */
export function toolRedis(config: BridgeConfig): { redis: RedisClient; url: string } {
  const url = config.redisUrl ?? DEFAULT_REDIS_URL;
  // A connection that waits to connect (the producer's fails fast); each command bounds how long.
  const redis = connectRedis({ url, cluster: config.redisCluster }, 'consumer');
  redis.on('error', () => undefined);
  return { redis, url };
}

/** Prints a result: JSON for scripts, lines for people. */
export function answer(args: Args, result: unknown, lines: () => string[]): void {
  if (args.flags.has('json')) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  else process.stdout.write(`${lines().join('\n')}\n`);
}

/** Resolves `promise`, or rejects after `ms` with `message`. */
export function within<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms))),
  ]).finally(() => clearTimeout(timer));
}
