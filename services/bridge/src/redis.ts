/**
 * Which Redis the bridge uses. REDIS_URL when set; otherwise the default address when
 * something answers there; otherwise a private redis-server from PATH, bound to loopback, with
 * its data (append-only file) under BRIDGE_DATA_DIR/redis, stopped with the bridge.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { DEFAULT_REDIS_URL, type BridgeConfig } from '@ccbridge/config';
import type { Logger } from '@ccbridge/log';

export class StartupError extends Error {
  override name = 'StartupError';
}

export interface RedisChoice {
  url: string;
  stop(): Promise<void>;
}

/** Whether a Redis answers PING at url, within timeoutMs. */
export async function redisAnswers(url: string, timeoutMs = 1_000): Promise<boolean> {
  const client = new Redis(url, {
    lazyConnect: true,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    connectTimeout: timeoutMs,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, child: ChildProcess): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && child.exitCode === null) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

export async function chooseRedis(config: BridgeConfig, log: Logger): Promise<RedisChoice> {
  const none = () => Promise.resolve();
  if (config.redisUrl) return { url: config.redisUrl, stop: none };
  if (await redisAnswers(DEFAULT_REDIS_URL)) return { url: DEFAULT_REDIS_URL, stop: none };
  if (spawnSync('redis-server', ['--version']).error) {
    throw new StartupError(
      `no Redis answers at ${DEFAULT_REDIS_URL} and redis-server is not on PATH: install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis), or set REDIS_URL`,
    );
  }
  const dir = path.resolve(config.dataDir, 'redis');
  mkdirSync(dir, { recursive: true });
  const port = new URL(DEFAULT_REDIS_URL).port;
  const child = spawn(
    'redis-server',
    ['--port', port, '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--save', ''],
    {
      stdio: ['ignore', 'ignore', 'inherit'],
      // Its own process group: Ctrl-C reaches the bridge alone, which closes open interactions
      // in Redis first and stops Redis last.
      detached: true,
    },
  );
  log.info({ dir, url: DEFAULT_REDIS_URL, pid: child.pid }, 'started a private redis-server (REDIS_URL is unset)');
  // Whatever way the bridge exits (a failed start, a forced shutdown, a crash), its Redis goes too.
  process.once('exit', () => {
    if (child.exitCode === null) child.kill('SIGTERM');
  });
  if (!(await waitUntil(() => redisAnswers(DEFAULT_REDIS_URL, 500), 10_000, child))) {
    child.kill('SIGKILL');
    throw new StartupError(`the private redis-server did not answer at ${DEFAULT_REDIS_URL} (see its messages above)`);
  }
  return {
    url: DEFAULT_REDIS_URL,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}
