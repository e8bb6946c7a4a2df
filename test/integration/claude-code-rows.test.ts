/**
 * Readable in LLMFlow: the real Claude Code binary against the stand-in API, its events through
 * the bridge into a real LLMFlow 0.4.1, each scenario run again with Claude Code's own tracing on.
 * A row earns its place (at most 1.05 rows in LLMFlow per span of Claude Code's own trace, over
 * tools, a refused tool, foreground and background subagents, project hooks and a resumed
 * session), every LLM span with an answer carries it, every LLM span's input tokens include the
 * cache, and a turn's root says what went wrong.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NATIVE_TRACING, projectWithHooks, runClaude, type RunClaudeOptions } from '../support/claude';
import { useClaudeStack } from '../support/per-file';
import { attrs, waitFor, type StoredSpan } from '../support/peers';
import { assertSameTrees, sessionTraces } from '../support/session-traces';

const stack = useClaudeStack();

const ALLOWED = ['Bash(echo:*)', 'Read', 'Agent'];
const NATIVE = NATIVE_TRACING;

type Run = Omit<RunClaudeOptions, 'apiUrl' | 'otlpEndpoint' | 'protocol' | 'prompt'>;
const run = (prompt: string, o: Run = {}) =>
  runClaude({
    apiUrl: stack.api.url,
    otlpEndpoint: stack.bridge.url,
    protocol: 'http/protobuf',
    allowedTools: ALLOWED,
    prompt,
    ...o,
  });

/** A session's prompts, run in order (the later ones with --resume); its session id. */
async function session(prompts: string[], o: Run, exitCode = 0): Promise<string> {
  let id: string | undefined;
  for (const prompt of prompts) {
    const r = await run(prompt, { ...o, resume: id });
    assert.equal(r.exitCode, exitCode, r.stderr);
    id ??= r.sessionId;
  }
  return id!;
}

/** Rows LLMFlow holds for the sessions drawn from events, and spans of Claude Code's own trace, per case. */
const tally: { label: string; rows: number; native: number }[] = [];

const CASES: { label: string; prompts: string[]; traces: number; hooks?: boolean }[] = [
  { label: 'tool', prompts: ['Run it USE_TOOL'], traces: 1 },
  { label: 'two tools', prompts: ['Do TWO_TOOLS'], traces: 1 },
  { label: 'refused tool', prompts: ['Try REFUSED_TOOL'], traces: 1 },
  { label: 'foreground subagent', prompts: ['Please SUBAGENT'], traces: 1 },
  { label: 'background subagent', prompts: ['Please BG_SUBAGENT'], traces: 2 },
  // Hook spans need Claude Code's detailed beta (to the bridge, as OTLP/HTTP JSON).
  { label: 'project hooks', prompts: ['Run it USE_TOOL'], traces: 1, hooks: true },
  {
    label: 'resumed session',
    prompts: ['What is 2+2?', 'Run it USE_TOOL', 'Say, then run it TEXT_AND_TOOL'],
    traces: 3,
  },
];

/** Every LLM span with an answer carries it (the stand-in knows what it answered to each request id). */
function assertAnswers(spans: StoredSpan[], label: string): number {
  let answered = 0;
  for (const llm of spans.filter((s) => s.span_name === 'claude_code.llm_request' && s.status !== 500)) {
    const a = attrs(llm);
    const served = stack.api.requests.find((r) => r.requestId === a['request_id']);
    assert.ok(served, `${label}: the stand-in served ${String(a['request_id'])}`);
    if (served.text === undefined) continue;
    answered += 1;
    assert.equal(a['gen_ai.completion'], served.text, `${label}: the answer of ${served.requestId}`);
    assert.deepEqual(
      JSON.parse(String(a['gen_ai.output.messages'])),
      [{ role: 'assistant', parts: [{ type: 'text', content: served.text }] }],
      label,
    );
    // Input tokens as the conventions count them: Anthropic's input_tokens plus the cache's reads and writes.
    const parts = Number(a['input_tokens']) + Number(a['cache_read_tokens']) + Number(a['cache_creation_tokens']);
    assert.ok(Number(a['cache_read_tokens']) > 0, `${label}: the stand-in reports cache reads`);
    assert.equal(llm.prompt_tokens, parts, `${label}: LLMFlow's prompt tokens include the cache`);
    assert.equal(a['gen_ai.usage.input_tokens'], parts, label);
  }
  assert.equal(
    spans.filter((s) => s.span_name === 'claude_code.assistant_response').length,
    0,
    `${label}: no answer rows`,
  );
  return answered;
}

for (const c of CASES) {
  test(`${c.label}: the rows Claude Code's own trace draws, each LLM call with its answer and its whole input count`, async () => {
    const cwd = () => (c.hooks ? { cwd: projectWithHooks() } : {});
    const fromEvents = await session(c.prompts, cwd());
    const native = c.hooks
      ? { ...NATIVE, ENABLE_BETA_TRACING_DETAILED: '1', BETA_TRACING_ENDPOINT: stack.bridge.url }
      : NATIVE;
    const fromNative = await session(c.prompts, { ...cwd(), env: native });
    const { native: own } = await assertSameTrees(stack.llmflow, fromEvents, fromNative, c.traces, c.label);
    // Rows that come late (a Stop hook after the root) are in by now; take LLMFlow's final word.
    const rows = (await sessionTraces(stack.llmflow, fromEvents)).spans;
    assert.ok(assertAnswers(rows, c.label) > 0, `${c.label}: answers to check`);
    assert.deepEqual(
      rows.filter((s) => /plugin_loaded|managed_settings|hook_registered/.test(s.span_name)).map((s) => s.span_name),
      [],
      `${c.label}: no start-up rows`,
    );
    const root = rows.find((s) => !s.parent_id && attrs(s)['claude_code.startup.plugins'] !== undefined);
    assert.ok(root, `${c.label}: a root with the start-up summary`);
    tally.push({ label: c.label, rows: rows.length, native: own.spans.length });
  });
}

test("over all of them: at most 1.05 rows in LLMFlow per span of Claude Code's own trace", (t) => {
  assert.equal(tally.length, CASES.length, 'every case ran');
  const rows = tally.reduce((n, t) => n + t.rows, 0);
  const native = tally.reduce((n, t) => n + t.native, 0);
  const ratio = rows / native;
  t.diagnostic(
    `${rows} rows in LLMFlow for ${native} spans of Claude Code's own trace (${ratio.toFixed(3)}): ${JSON.stringify(tally)}`,
  );
  assert.ok(ratio <= 1.05, `${rows} rows for ${native} spans (${ratio.toFixed(3)}): ${JSON.stringify(tally)}`);
});

test('a turn that failed: its root is ERROR and lists what went wrong, the retries named', async () => {
  const id = await session(['Now FAIL_ALWAYS'], {}, 1);
  const root = await waitFor("the failed turn's root", async () =>
    (await sessionTraces(stack.llmflow, id)).spans.find((s) => !s.parent_id),
  );
  const problems = attrs(root)['claude_code.interaction.problems'] as string[];
  assert.ok(Array.isArray(problems), 'a problems list');
  assert.match(problems[0]!, /^api_error: .*500/);
  assert.ok(
    problems.some((p) => /^api_retries_exhausted: retries exhausted after 3 attempts/.test(p)),
    JSON.stringify(problems),
  );
  assert.equal(root.status, 500, 'ERROR');
  const failed = (await sessionTraces(stack.llmflow, id)).spans.find((s) => s.span_name === 'claude_code.llm_request')!;
  assert.equal(
    Number(attrs(failed)['claude_code.api_retries_exhausted.total_attempts']),
    3,
    'the exhausted retries on the request they are about',
  );
});

test('a refused tool: the root says so', async () => {
  const id = await session(['Try REFUSED_TOOL'], {});
  const root = await waitFor('the root', async () =>
    (await sessionTraces(stack.llmflow, id)).spans.find((s) => !s.parent_id),
  );
  assert.deepEqual(
    (attrs(root)['claude_code.interaction.problems'] as string[]).map((p) => p.replace(/\(.*\)$/, '()')),
    ['tool_decision: Bash refused ()'],
  );
  assert.notEqual(root.status, 500, 'the turn itself ended with an answer');
});
