/**
 * Peers a test file shares among its tests: started before the first, stopped after the last.
 * The returned object's fields are set once `before` has run.
 */
import { before, after } from 'node:test';
import { Redis } from 'ioredis';
import { startBridge, startLlmflow, startRedis, type BridgePeer, type LlmflowPeer, type RedisPeer } from './peers';
import { startAnthropicStandin, type AnthropicStandin, type StandinOptions } from './anthropic-standin';
import { Harness, type HarnessOptions } from './assembly';

export interface BridgeStack {
  redis: RedisPeer;
  llmflow: LlmflowPeer;
  /** Ingest and worker in one process, between them. */
  bridge: BridgePeer;
  /**
   * Settles once the stack is up (or failed to start): a test file's own `before` that needs the
   * stack awaits it, for Node 20 runs a file's `before` hooks at the same time.
   */
  ready: Promise<void>;
}

/** Runs `start` in a `before` hook; the promise settles when it is done (marked handled: nothing need await it). */
function beforeAll(start: () => Promise<void>): Promise<void> {
  let run!: () => void;
  const done = new Promise<void>((resolve) => (run = resolve)).then(start);
  done.catch(() => {});
  before(async () => {
    run();
    await done;
  });
  return done;
}

export function useBridgeStack(env: Record<string, string> = {}): BridgeStack {
  const stack = {} as BridgeStack;
  stack.ready = beforeAll(async () => {
    [stack.redis, stack.llmflow] = await Promise.all([startRedis(), startLlmflow()]);
    stack.bridge = await startBridge({ REDIS_URL: stack.redis.url, LLMFLOW_URL: stack.llmflow.url, ...env });
  });
  after(async () => {
    await stack.bridge?.stop();
    await Promise.all([stack.llmflow?.stop(), stack.redis?.stop()]);
  });
  return stack;
}

export interface ClaudeStack extends BridgeStack {
  /** The stand-in Messages API the real Claude Code binary talks to. */
  api: AnthropicStandin;
}

/** A bridge stack and the stand-in API (`standin`: its options), for tests that run the real Claude Code binary. */
export function useClaudeStack(env: Record<string, string> = {}, standin: StandinOptions = {}): ClaudeStack {
  const stack = useBridgeStack(env) as ClaudeStack;
  const bridgeUp = stack.ready;
  const apiUp = beforeAll(async () => {
    stack.api = await startAnthropicStandin(standin);
  });
  stack.ready = Promise.all([bridgeUp, apiUp]).then(() => undefined);
  stack.ready.catch(() => {});
  after(async () => {
    await stack.api?.stop();
  });
  return stack;
}

export interface RedisWithClient {
  redis: RedisPeer;
  /** Connected (and waiting for its connection, as a worker's does). */
  client: Redis;
}

export function useRedis(): RedisWithClient {
  const peers = {} as RedisWithClient;
  before(async () => {
    peers.redis = await startRedis();
    peers.client = new Redis(peers.redis.url, { maxRetriesPerRequest: null });
    await peers.client.ping();
  });
  after(async () => {
    peers.client?.disconnect();
    await peers.redis?.stop();
  });
  return peers;
}

/** A Redis for the file and harnesses (workers) on it, each with its own namespace; all disconnected after. */
export function useHarnesses(): { harness: (options?: HarnessOptions) => Harness } {
  let redis: RedisPeer | undefined;
  const made: Harness[] = [];
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    for (const h of made) h.disconnect();
    await redis?.stop();
  });
  return {
    harness: (options) => {
      const h = new Harness({ url: redis!.url }, options);
      made.push(h);
      return h;
    },
  };
}
