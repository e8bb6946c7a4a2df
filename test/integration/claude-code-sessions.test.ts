/**
 * Each session reconciled, with the real Claude Code binary against the stand-in Messages API:
 * a session whose logs for one turn are dropped on the way (a proxy answers 200 and discards
 * them; its metrics pass) gets exactly one `claude_code.session.unaccounted` span in LLMFlow,
 * with that turn's tokens and cost, in the trace of the session's latest turn; an intact session
 * of many turns, resumed ones included, gets none; `ccbridge sessions --json` agrees with both.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { runClaude } from '../support/claude';
import { startCollector } from '../support/collector';
import { startOtlpRelay, type OtlpRelay } from '../support/otlp-relay';
import { attrs, waitFor, type StoredSpan } from '../support/peers';
import { useClaudeStack } from '../support/per-file';

const CLI = path.join(__dirname, '..', '..', 'services', 'bridge', 'dist', 'cli.js');
/** Quiet this long, a session is compared (BRIDGE_SESSION_SETTLE_MS): past Claude Code's metric interval here (1 s). */
const SETTLE_MS = 4_000;

const stack = useClaudeStack({ BRIDGE_SESSION_SETTLE_MS: String(SETTLE_MS) });
let proxy: OtlpRelay;

before(async () => {
  // The relay asks for the bridge's address per request.
  proxy = await startOtlpRelay(() => stack.bridge.url);
});
after(async () => {
  await proxy?.close();
});

const FINDING = 'claude_code.session.unaccounted';

/** Where Claude Code sends its telemetry: the dropping proxy (default), or another endpoint. */
type Via = { otlpEndpoint: string; protocol: 'http/protobuf' | 'grpc' };

async function run(prompt: string, resume?: string, via?: Via): Promise<string> {
  const r = await runClaude({
    prompt,
    apiUrl: stack.api.url,
    ...(via ?? { otlpEndpoint: proxy.url, protocol: 'http/protobuf' }),
    allowedTools: ['Bash(echo:*)', 'Read'],
    ...(resume && { resume }),
  });
  assert.equal(r.exitCode, 0, r.stderr);
  return r.sessionId!;
}

interface SessionView {
  session: string;
  verdict: string;
  findings: number;
  turns: { drawn: number; complete: number; incomplete: number };
  totals: { events: Record<string, number>; counters: Record<string, number>; unaccounted: Record<string, number> };
}

function sessionsJson(): Promise<SessionView[]> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [CLI, 'sessions', '--json'],
      { env: { PATH: process.env.PATH, REDIS_URL: stack.redis.url } },
      (err: Error | null, stdout) => {
        if (err && !stdout) return reject(err);
        resolve((JSON.parse(stdout) as { sessions: SessionView[] }).sessions);
      },
    );
  });
}

/** Waits until the session has been compared (its verdict is no longer pending). */
const compared = (session: string) =>
  waitFor(
    `session ${session} compared`,
    async () => {
      const s = (await sessionsJson()).find((x) => x.session === session);
      return s && s.verdict !== 'pending' ? s : undefined;
    },
    60_000,
    500,
  );

/** What Claude Code's counters in LLMFlow say for a session, per type (and `cost`). */
async function countersOf(session: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const row of await stack.llmflow.metricRows()) {
    const a = JSON.parse(row.attributes) as Record<string, unknown>;
    if (a['session.id'] !== session) continue;
    const what =
      row.name === 'claude_code.token.usage'
        ? String(a.type)
        : row.name === 'claude_code.cost.usage'
          ? 'cost'
          : undefined;
    if (what) out[what] = (out[what] ?? 0) + (row.value_int ?? row.value_double ?? 0);
  }
  return out;
}

/** What a session's api_request events in LLMFlow add up to, per type (and `cost`). */
function eventsOf(spans: StoredSpan[]): Record<string, number> {
  const out: Record<string, number> = {};
  const fields = {
    input: 'input_tokens',
    output: 'output_tokens',
    cacheRead: 'cache_read_tokens',
    cacheCreation: 'cache_creation_tokens',
    cost: 'cost_usd',
  };
  for (const s of spans.filter((x) => x.span_name === 'claude_code.llm_request')) {
    for (const [what, field] of Object.entries(fields)) out[what] = (out[what] ?? 0) + Number(attrs(s)[field] ?? 0);
  }
  return out;
}

test('an intact session of many turns, resumed twice, gets no finding, and ccbridge sessions says ok', async () => {
  const id = await run('Run it USE_TOOL');
  await run('Do TWO_TOOLS', id);
  await run('What is 2+2?', id);
  const s = await compared(id);
  assert.equal(s.verdict, 'ok', JSON.stringify(s));
  assert.equal(s.findings, 0);
  assert.deepEqual(s.turns, { drawn: 3, complete: 3, incomplete: 0 });
  assert.deepEqual(s.totals.events, s.totals.counters, 'events and counters agree');
  assert.ok(s.totals.events.input! > 0 && s.totals.events.cost! > 0);
  const spans = (await stack.llmflow.spans()).filter((x) => attrs(x)['session.id'] === id);
  assert.equal(spans.filter((x) => x.span_name === FINDING).length, 0);
});

test('through the shipped Collector config, over gRPC: an intact resumed session gets no finding', async () => {
  // The Collector batches logs and metrics apart (its batch processor, its own sending queue):
  // the counters may reach the bridge before or after the events they count.
  const collector = await startCollector({ bridgeUrl: stack.bridge.url });
  try {
    const via: Via = { otlpEndpoint: `http://${collector.grpcAddress}`, protocol: 'grpc' };
    const id = await run('Run it USE_TOOL', undefined, via);
    await run('What is 2+2?', id, via);
    const s = await compared(id);
    assert.equal(s.verdict, 'ok', JSON.stringify(s));
    assert.equal(s.findings, 0);
    assert.deepEqual(s.turns, { drawn: 2, complete: 2, incomplete: 0 });
    assert.deepEqual(s.totals.events, s.totals.counters, 'events and counters agree');
    assert.ok(s.totals.counters.input! > 0, 'the counters came through the Collector');
    const spans = (await stack.llmflow.spans()).filter((x) => attrs(x)['session.id'] === id);
    assert.equal(spans.filter((x) => x.span_name === FINDING).length, 0);
  } finally {
    await collector.stop();
  }
});

test("a turn whose logs were dropped on the way: exactly one unaccounted span, with its tokens and cost, in the latest turn's trace", async () => {
  const id = await run('Run it USE_TOOL');
  proxy.dropLogs = true;
  try {
    await run('What is 2+2?', id);
  } finally {
    proxy.dropLogs = false;
  }
  assert.ok(proxy.dropped > 0, "the second turn's logs were dropped");
  const finding = await waitFor(
    'the finding in LLMFlow',
    async () =>
      (await stack.llmflow.spans()).filter((x) => x.span_name === FINDING && attrs(x)['session.id'] === id)[0],
    60_000,
    500,
  );
  const s = await compared(id);
  const spans = (await stack.llmflow.spans()).filter((x) => attrs(x)['session.id'] === id);
  const counters = await countersOf(id);
  const events = eventsOf(spans);
  const a = attrs(finding);
  // The lost turn: what the counters have beyond the events.
  const lost = {
    input: counters.input! - events.input!,
    output: counters.output! - events.output!,
    cacheRead: counters.cacheRead! - events.cacheRead!,
    cacheCreation: counters.cacheCreation! - events.cacheCreation!,
  };
  assert.ok(
    lost.input > 0 && lost.output > 0,
    `the counters hold the lost turn: ${JSON.stringify({ counters, events })}`,
  );
  assert.deepEqual(
    [
      a['claude_code.unaccounted.input_tokens'],
      a['claude_code.unaccounted.output_tokens'],
      a['claude_code.unaccounted.cache_read_tokens'],
      a['claude_code.unaccounted.cache_creation_tokens'],
    ],
    [lost.input, lost.output, lost.cacheRead, lost.cacheCreation],
  );
  assert.ok(
    Math.abs(Number(a['claude_code.unaccounted.cost_usd']) - (counters.cost! - events.cost!)) < 1e-9 &&
      counters.cost! - events.cost! > 0,
    'its cost',
  );
  assert.equal(a['claude_code.unaccounted.kind'], 'events_missing');
  assert.equal(finding.status, 500, 'ERROR status');
  const root = spans.find((x) => !x.parent_id && x.span_name === 'claude_code.interaction')!;
  assert.equal(finding.trace_id, root.trace_id, 'in the trace of the latest turn that arrived');
  assert.equal(finding.parent_id, root.id);

  assert.equal(s.verdict, 'events_missing');
  assert.equal(s.findings, 1);
  assert.deepEqual(s.turns, { drawn: 1, complete: 1, incomplete: 0 }, 'the lost turn never reached LLMFlow');
  assert.deepEqual(
    [
      s.totals.unaccounted.input,
      s.totals.unaccounted.output,
      s.totals.unaccounted.cacheRead,
      s.totals.unaccounted.cacheCreation,
    ],
    [lost.input, lost.output, lost.cacheRead, lost.cacheCreation],
  );
  // Compared and settled: the difference counts as reported, and is not reported again.
  assert.equal(
    (await stack.llmflow.spans()).filter((x) => x.span_name === FINDING && attrs(x)['session.id'] === id).length,
    1,
  );
  assert.match(stack.bridge.output(), /"verdict":"events_missing"[^\n]*events never arrived/);
});
