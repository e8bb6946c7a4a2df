/** What every ccbridge command shares: its arguments, its settings, how it answers and exits. */
import { parseArgs as parseArgsStrict } from 'node:util';
import { ConfigError, DEFAULT_REDIS_URL, loadConfig, type BridgeConfig } from '@ccbridge/config';
import { connectRedis, type RedisClient } from '@ccbridge/redis';

/** Exit statuses: 0 all well, 1 something is wrong or unreachable, 2 bad usage or setting. */
export const EXIT = { ok: 0, problem: 1, usage: 2 } as const;

export class UsageError extends Error {}

export interface Args {
  positional: string[];
  flags: Map<string, string | true>;
}

/** The flags a command takes: a switch (`--json`) or one that takes a value (`--limit N`). */
export type FlagSpec = Record<string, 'boolean' | 'string'>;

/**
 * `--name value`, `--name=value` and bare `--switch`, by node:util's parseArgs in strict mode: a
 * flag the command does not declare, a value missing or given to a switch is a UsageError (the
 * caller answers it with the command's own help and exit status 2).
 */
export function parseArgs(argv: string[], spec: FlagSpec): Args {
  const options = Object.fromEntries(Object.entries(spec).map(([name, type]) => [name, { type }]));
  let parsed: ReturnType<typeof parseArgsStrict>;
  try {
    parsed = parseArgsStrict({ args: argv, options, strict: true, allowPositionals: true });
  } catch (err) {
    // node:util's own words ("Unknown option '--x'.", "Option '--limit <value>' argument missing").
    throw new UsageError((err as Error).message.split('\n')[0]!.replace(/\. To specify a positional.*$/, '.'));
  }
  const flags = new Map<string, string | true>();
  for (const [name, v] of Object.entries(parsed.values)) if (typeof v === 'string' || v === true) flags.set(name, v);
  return { positional: parsed.positionals, flags };
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
