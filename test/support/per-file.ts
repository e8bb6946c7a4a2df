/**
 * Peers a test file shares among its tests: started before the first, stopped after the last.
 * The returned object's fields are set once `before` has run.
 */
import { before, after } from 'node:test';
import { Redis } from 'ioredis';
import { startBridge, startLlmflow, startRedis, type BridgePeer, type LlmflowPeer, type RedisPeer } from './peers';

export interface BridgeStack {
  redis: RedisPeer;
  llmflow: LlmflowPeer;
  /** Ingest and worker in one process, between them. */
  bridge: BridgePeer;
}

export function useBridgeStack(env: Record<string, string> = {}): BridgeStack {
  const stack = {} as BridgeStack;
  before(async () => {
    [stack.redis, stack.llmflow] = await Promise.all([startRedis(), startLlmflow()]);
    stack.bridge = await startBridge({ REDIS_URL: stack.redis.url, LLMFLOW_URL: stack.llmflow.url, ...env });
  });
  after(async () => {
    await stack.bridge?.stop();
    await Promise.all([stack.llmflow?.stop(), stack.redis?.stop()]);
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
