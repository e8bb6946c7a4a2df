/**
 * Each LLM call's input and output from Claude Code's raw API bodies (OTEL_LOG_RAW_API_BODIES=1),
 * with the real binary against the stand-in API, into a real LLMFlow behind a gate that refuses
 * bodies over 100 KB (as LLMFlow builds on express do): the bodies are no rows of their own, their
 * messages are on the LLM span they belong to, and a 500 KB conversation lands cut to fit, its
 * oldest messages dropped first.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startAnthropicStandin, type AnthropicStandin } from '../support/anthropic-standin';
import { runClaude, type RunClaudeOptions } from '../support/claude';
import { startLlmflowGate, type LlmflowGate } from '../support/llmflow-gate';
import {
  attrs,
  startBridge,
  startLlmflow,
  startRedis,
  waitFor,
  type BridgePeer,
  type LlmflowPeer,
  type RedisPeer,
  type StoredSpan,
} from '../support/peers';
import { sessionTraces } from '../support/session-traces';

let redis: RedisPeer;
let llmflow: LlmflowPeer;
let gate: LlmflowGate;
let bridge: BridgePeer;
let api: AnthropicStandin;

before(async () => {
  [redis, llmflow, api] = await Promise.all([startRedis(), startLlmflow(), startAnthropicStandin()]);
  gate = await startLlmflowGate(llmflow.url, { maxBodyBytes: 100 * 1024 });
  bridge = await startBridge({ REDIS_URL: redis.url, LLMFLOW_URL: gate.url });
});
after(async () => {
  await bridge?.stop();
  await gate?.stop();
  await Promise.all([llmflow?.stop(), redis?.stop(), api?.stop()]);
});

// The bodies whole: Claude Code cuts event text at CLAUDE_CODE_OTEL_CONTENT_MAX_LENGTH (60 KB by default).
const BODIES = { OTEL_LOG_RAW_API_BODIES: '1', CLAUDE_CODE_OTEL_CONTENT_MAX_LENGTH: '4000000' };
type Run = Omit<RunClaudeOptions, 'apiUrl' | 'otlpEndpoint' | 'protocol'>;
const run = (o: Run) =>
  runClaude({
    apiUrl: api.url,
    otlpEndpoint: bridge.url,
    protocol: 'http/protobuf',
    allowedTools: ['Bash(echo:*)'],
    env: BODIES,
    ...o,
  });

type Message = { role: string; parts: { type: string; content?: unknown; name?: string; id?: string }[] };
const messagesOf = (s: StoredSpan, key: string) => JSON.parse(String(attrs(s)[key])) as Message[];

/** The LLM spans of a session's traces once `want` of them carry their input and output, with the whole session's rows. */
async function llmSpans(session: string, want: number): Promise<{ llm: StoredSpan[]; rows: StoredSpan[] }> {
  return waitFor(
    `${want} LLM spans with their messages`,
    async () => {
      const { spans } = await sessionTraces(llmflow, session);
      const llm = spans.filter(
        (s) =>
          s.span_name === 'claude_code.llm_request' &&
          attrs(s)['gen_ai.input.messages'] &&
          attrs(s)['gen_ai.output.messages'],
      );
      return llm.length >= want && spans.filter((s) => !s.parent_id).length > 0 ? { llm, rows: spans } : undefined;
    },
    60_000,
  );
}

test('with raw bodies logged, each LLM span shows what it was sent and what came back, and the bodies are no rows', async () => {
  const r = await run({ prompt: 'Run it USE_TOOL' });
  assert.equal(r.exitCode, 0, r.stderr);
  const { llm, rows } = await llmSpans(r.sessionId!, 2);
  assert.deepEqual(
    rows.filter((s) => /api_(request|response)_body/.test(s.span_name)).map((s) => s.span_name),
    [],
    'no body rows',
  );
  const [first, second] = [...llm].sort((a, b) => a.timestamp - b.timestamp);
  // The first call: the prompt in, a Bash call out.
  const asked = messagesOf(first!, 'gen_ai.input.messages');
  const outline = (m: Message[]) =>
    JSON.stringify(
      m.map((x) => [x.role, x.parts.map((p) => `${p.type}:${String(p.content ?? p.name ?? '').slice(0, 60)}`)]),
    );
  assert.ok(
    asked.some(
      (m) => m.role === 'user' && m.parts.some((p) => p.type === 'text' && String(p.content).includes('USE_TOOL')),
    ),
    outline(asked),
  );
  assert.ok(
    messagesOf(first!, 'gen_ai.output.messages')[0]!.parts.some((p) => p.type === 'tool_call' && p.name === 'Bash'),
  );
  assert.ok(
    (JSON.parse(String(attrs(first!)['gen_ai.system_instructions'])) as unknown[]).length > 0,
    'the system prompt',
  );
  // The second: the tool's result last in, the answer out.
  const then = messagesOf(second!, 'gen_ai.input.messages');
  assert.equal(then.length, asked.length + 2, `its answer and the tool's result added: ${outline(then)}`);
  assert.ok(
    then.some((m) => m.parts.some((p) => p.type === 'tool_call_response')),
    outline(then),
  );
  assert.deepEqual(messagesOf(second!, 'gen_ai.output.messages')[0]!.parts, [{ type: 'text', content: r.result }]);
  assert.equal(attrs(second!)['gen_ai.completion'], r.result);
});

test('a 500 KB conversation lands in an LLMFlow that refuses bodies over 100 KB, its oldest messages dropped first', async () => {
  const pasted = `Why does this fail?\n${'2026-11-25T12:00:00Z ERROR worker: connection reset by peer (retrying)\n'.repeat(7_500)}`;
  assert.ok(pasted.length > 500_000);
  const first = await run({ prompt: '', stdin: pasted });
  assert.equal(first.exitCode, 0, first.stderr);
  const next = await run({ prompt: 'What is 2+2?', resume: first.sessionId! });
  assert.equal(next.exitCode, 0, next.stderr);
  const { llm } = await llmSpans(first.sessionId!, 2);
  const latest = llm.find((s) =>
    messagesOf(s, 'gen_ai.input.messages')
      .at(-1)!
      .parts.some((p) => String(p.content).includes('What is 2+2?')),
  );
  const outline = (m: Message[]) =>
    JSON.stringify(
      m.map((x) => [x.role, x.parts.map((p) => `${p.type}:${String(p.content ?? p.name ?? '').slice(0, 60)}`)]),
    );
  assert.ok(
    latest,
    `the resumed call, its newest message kept: ${llm.map((s) => outline(messagesOf(s, 'gen_ai.input.messages'))).join('\n')}`,
  );
  const a = attrs(latest);
  assert.ok(Number(a['ccbridge.trimmed.messages']) >= 1, 'the oldest message dropped');
  assert.ok(!String(a['gen_ai.input.messages']).includes('connection reset by peer'), 'the pasted log was the oldest');
  assert.ok(latest.attributes.length < 64 * 1024 + 4096, `under the span limit: ${latest.attributes.length}`);
  assert.equal(a['gen_ai.completion'], next.result);
});
