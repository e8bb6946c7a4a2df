/**
 * Claude Code's metrics in LLMFlow, with the real Claude Code binary offline against the
 * stand-in Messages API: after a session (two processes: a prompt, then `--resume`), a fresh
 * LLMFlow 0.4.1's `/api/metrics/tokens` holds the session's tokens by type and model, equal to
 * what its `api_request` events add up to. Straight to the bridge and through the shipped
 * Collector config; with LLMFlow stopped for a while during the run; and with cumulative
 * temporality, which the bridge turns into deltas.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { metricsKeys } from '@ccbridge/redis';
import { startAnthropicStandin, type AnthropicStandin } from '../support/anthropic-standin';
import { runClaude, type OtlpProtocol } from '../support/claude';
import { startCollector } from '../support/collector';
import { sentTokens, startOtlpRelay } from '../support/otlp-relay';
import { startRelay, type Relay } from '../support/relay';
import {
  attrs,
  startBridge,
  startLlmflow,
  startRedis,
  waitFor,
  type BridgePeer,
  type LlmflowPeer,
  type RedisPeer,
} from '../support/peers';

let api: AnthropicStandin;

before(async () => {
  // SLOW_ANSWERS answers 2.5 s late: a process lives through several metric exports.
  api = await startAnthropicStandin({ slowMs: 2_500 });
});
after(async () => {
  await api?.stop();
});

interface Stack {
  redis: RedisPeer;
  llmflow: LlmflowPeer;
  bridge: BridgePeer;
  llmflowRelay: Relay;
}

/** A fresh Redis, LLMFlow and bridge for one test: LLMFlow's token sums cover everything it holds. */
async function withStack(run: (stack: Stack) => Promise<void>): Promise<void> {
  const [redis, llmflow] = await Promise.all([startRedis(), startLlmflow()]);
  // The bridge reaches LLMFlow through a relay, so an LLMFlow restarted on other ports keeps its address.
  const llmflowRelay = await startRelay(new URL(llmflow.url).host);
  const stack: Stack = {
    redis,
    llmflow,
    llmflowRelay,
    bridge: await startBridge({ REDIS_URL: redis.url, LLMFLOW_URL: llmflowRelay.url }),
  };
  try {
    await run(stack);
  } finally {
    await stack.bridge.stop();
    await Promise.all([stack.llmflow.stop(), stack.redis.stop(), llmflowRelay.stop()]);
  }
}

/** Claude Code's token.usage `type` for each token field of an api_request event. */
const TYPES = {
  input_tokens: 'input',
  output_tokens: 'output',
  cache_read_tokens: 'cacheRead',
  cache_creation_tokens: 'cacheCreation',
} as const;

/**
 * A session of two processes (a tool call, then `--resume` with a plain prompt), sent to
 * `endpoint`. Resolves with the session's id once it has ended.
 */
async function session(
  endpoint: string,
  protocol: OtlpProtocol,
  env: Record<string, string> = {},
  firstPrompt = 'Run it USE_TOOL',
): Promise<string> {
  const run = (prompt: string, resume?: string) =>
    runClaude({
      prompt,
      apiUrl: api.url,
      otlpEndpoint: endpoint,
      protocol,
      allowedTools: ['Bash(echo:*)'],
      env,
      ...(resume && { resume }),
    });
  const first = await run(firstPrompt);
  assert.equal(first.exitCode, 0, first.stderr);
  const second = await run('What is 2+2?', first.sessionId);
  assert.equal(second.exitCode, 0, second.stderr);
  return first.sessionId!;
}

/** What the session's api_request events add up to, as `model type` → tokens, read from their spans in LLMFlow once both turns are drawn. */
async function eventTokens(llmflow: LlmflowPeer, sessionId: string): Promise<Record<string, number>> {
  const spans = await waitFor(
    `both turns of session ${sessionId} in LLMFlow`,
    async () => {
      const ours = (await llmflow.spans()).filter((s) => attrs(s)['session.id'] === sessionId);
      return ours.filter((s) => !s.parent_id).length === 2 ? ours : undefined;
    },
    90_000,
  );
  const sums: Record<string, number> = {};
  for (const s of spans.filter((x) => x.span_name === 'claude_code.llm_request')) {
    const a = attrs(s);
    for (const [field, type] of Object.entries(TYPES)) {
      const key = `${String(a.model)} ${type}`;
      sums[key] = (sums[key] ?? 0) + Number(a[field] ?? 0);
    }
  }
  assert.ok(
    Object.keys(sums).length >= 4 && Object.values(sums).every((n) => n > 0),
    `the events carry tokens of every type: ${JSON.stringify(sums)}`,
  );
  return sums;
}

/** Waits until LLMFlow's metric sums equal `want` (Claude Code flushes its last metrics as it exits), then holds them to it. */
async function assertMetricTokens(llmflow: LlmflowPeer, want: Record<string, number>): Promise<void> {
  const seen = await waitFor(
    "LLMFlow's metric token sums to equal the events'",
    async () => {
      const got = await llmflow.metricTokens();
      return JSON.stringify(Object.entries(got).sort()) === JSON.stringify(Object.entries(want).sort())
        ? got
        : undefined;
    },
    30_000,
  ).catch(async () => llmflow.metricTokens());
  assert.deepEqual(seen, want);
}

test("straight to the bridge: LLMFlow sums the session's tokens by type and model as its api_request events do", async () => {
  await withStack(async ({ llmflow, bridge }) => {
    const id = await session(bridge.url, 'http/protobuf');
    await assertMetricTokens(llmflow, await eventTokens(llmflow, id));
  });
});

test('through the shipped Collector config, over gRPC: the same sums', async () => {
  await withStack(async ({ llmflow, bridge }) => {
    const collector = await startCollector({ bridgeUrl: bridge.url });
    try {
      const id = await session(`http://${collector.grpcAddress}`, 'grpc');
      await assertMetricTokens(llmflow, await eventTokens(llmflow, id));
    } finally {
      await collector.stop();
    }
  });
});

test('with cumulative temporality, the bridge turns the counters into deltas: the same sums', async () => {
  await withStack(async ({ redis, llmflow, bridge }) => {
    // Each process exports its running totals every second and once more as it exits; the
    // slow answers keep the first one running through several exports of the same totals.
    const id = await session(
      bridge.url,
      'http/json',
      { OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: 'cumulative' },
      'Run it SLOW_ANSWERS',
    );
    await assertMetricTokens(llmflow, await eventTokens(llmflow, id));
    const client = new Redis(redis.url);
    try {
      const series = await client.keys(`${metricsKeys().series}*`);
      assert.ok(series.length >= 8, `the cumulative series of both processes are followed (${series.length})`);
    } finally {
      client.disconnect();
    }
  });
});

test('LLMFlow stopped for a while during the session loses none of its metrics', async () => {
  await withStack(async ({ llmflow, llmflowRelay, bridge }) => {
    await llmflow.stop();
    llmflowRelay.target = undefined;
    // What Claude Code sent is what must arrive: now and then Claude Code 2.1.328 leaves a
    // request's tokens out of its counters (a resumed process's last one, as it exits), which
    // the sessions' check reports; here the bridge is held to every point it was given.
    const relay = await startOtlpRelay(bridge.url);
    let restarted: LlmflowPeer | undefined;
    try {
      await session(relay.url, 'http/protobuf');
      await waitFor(
        'the bridge to hold the metrics back while LLMFlow is away',
        () => /the metrics wait in the queue/.test(bridge.output()),
        30_000,
      );
      restarted = await startLlmflow(llmflow.dataDir);
      llmflowRelay.target = new URL(restarted.url).host;
      const sent = sentTokens(relay.metrics);
      assert.ok(
        Object.values(sent).some((n) => n > 0),
        `Claude Code sent tokens: ${JSON.stringify(sent)}`,
      );
      await assertMetricTokens(restarted, sent);
    } finally {
      await restarted?.stop();
      await relay.close();
    }
  });
});
