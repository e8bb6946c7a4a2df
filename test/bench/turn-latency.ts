/**
 * Turn latency: from the batch holding a turn's last event being accepted by the bridge (its
 * 200) to the turn's root being readable in LLMFlow, at the shipped settings; beside it, the
 * same for a root posted straight to LLMFlow's /v1/traces (its own floor), in the same run.
 *
 * Each turn is the `tool` capture with ids of its own: everything but its end marker is posted
 * first, and once its child spans are in LLMFlow the end marker alone is posted and timed.
 */
import { randomUUID } from 'node:crypto';
import { rootSpanIdFor, traceIdFor } from '@ccbridge/claude-events';
import type { LogRecord } from '@ccbridge/otlp';
import { recordsOf, requestOf } from '../support/assembly';
import { variant } from '../support/assembly-suite';
import { logsOf } from '../support/fixtures';
import { post, startBridge, startLlmflow, startRedis, waitFor } from '../support/peers';

export interface LatencyFigures {
  turns: number;
  bridgeP50Ms: number;
  bridgeP99Ms: number;
  llmflowP50Ms: number;
  llmflowP99Ms: number;
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;

async function readable(llmflowUrl: string, spanId: string): Promise<true | undefined> {
  const r = await fetch(`${llmflowUrl}/api/traces/${spanId}`);
  await r.arrayBuffer();
  return r.ok || undefined;
}

/** Polls every 5 ms from `t0` until the span is readable; ms taken. */
async function timeUntilReadable(llmflowUrl: string, spanId: string, t0: number): Promise<number> {
  await waitFor(`span ${spanId} in LLMFlow`, () => readable(llmflowUrl, spanId), 120_000, 5);
  return performance.now() - t0;
}

export async function measureTurnLatency(turns = 30): Promise<LatencyFigures> {
  const [redis, llmflow] = await Promise.all([startRedis(), startLlmflow()]);
  const bridge = await startBridge({ REDIS_URL: redis.url, LLMFLOW_URL: llmflow.url, LOG_LEVEL: 'warn' });
  const template = logsOf('json', 'tool');
  const body = (records: LogRecord[]) => Buffer.from(JSON.stringify(requestOf(template, records)));
  const viaBridge: number[] = [];
  const direct: number[] = [];
  try {
    for (let i = 0; i < turns; i++) {
      const records = variant(recordsOf(template), { tag: `bench-${i}`, session: randomUUID() });
      const end = records.filter((r) => r.body?.stringValue === 'claude_code.assistant_response');
      const promptId = records.flatMap((r) => r.attributes ?? []).find((a) => a.key === 'prompt.id')!.value!
        .stringValue!;
      const rootId = rootSpanIdFor(`prompt/${promptId}`);
      // Counted before the post: a fast worker may have stored the turn so far before a count after it.
      const children = (await llmflow.listed()).length + 4;
      const before = await post(
        `${bridge.url}/v1/logs`,
        body(records.filter((r) => !end.includes(r))),
        'application/json',
      );
      if (before.status !== 200) throw new Error(`bridge answered ${before.status}`);
      await waitFor('the turn so far in LLMFlow', async () => (await llmflow.listed()).length >= children || undefined);
      const t0 = performance.now();
      const last = await post(`${bridge.url}/v1/logs`, body(end), 'application/json');
      if (last.status !== 200) throw new Error(`bridge answered ${last.status}`);
      viaBridge.push(await timeUntilReadable(llmflow.url, rootId, t0));

      // The floor: a root of the same size posted straight to LLMFlow.
      const stored = await (await fetch(`${llmflow.url}/api/traces/${rootId}`)).json();
      const spanId = randomUUID().replace(/-/g, '').slice(0, 16);
      const span = {
        traceId: traceIdFor(`direct/${i}`),
        spanId,
        name: 'claude_code.interaction',
        kind: 1,
        startTimeUnixNano: '1',
        endTimeUnixNano: '2',
        attributes: [{ key: 'copy', value: { stringValue: JSON.stringify(stored) } }],
      };
      const t1 = performance.now();
      const r = await post(
        `${llmflow.url}/v1/traces`,
        Buffer.from(JSON.stringify({ resourceSpans: [{ resource: {}, scopeSpans: [{ spans: [span] }] }] })),
        'application/json',
      );
      if (r.status !== 200) throw new Error(`LLMFlow answered ${r.status}`);
      direct.push(await timeUntilReadable(llmflow.url, spanId, t1));
    }
  } finally {
    await bridge.stop();
    await Promise.all([llmflow.stop(), redis.stop()]);
  }
  viaBridge.sort((a, b) => a - b);
  direct.sort((a, b) => a - b);
  const round = (n: number) => Math.round(n * 10) / 10;
  return {
    turns,
    bridgeP50Ms: round(pct(viaBridge, 0.5)),
    bridgeP99Ms: round(pct(viaBridge, 0.99)),
    llmflowP50Ms: round(pct(direct, 0.5)),
    llmflowP99Ms: round(pct(direct, 0.99)),
  };
}
