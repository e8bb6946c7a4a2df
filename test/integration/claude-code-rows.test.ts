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

/** The text and the tool results of a message's content, as the Messages API has them. */
function contentOf(content: unknown): { texts: string[]; results: string[] } {
  const blocks = Array.isArray(content) ? (content as Record<string, unknown>[]) : [{ type: 'text', text: content }];
  return {
    texts: blocks.filter((b) => b.type === 'text').map((b) => String(b.text)),
    results: blocks.filter((b) => b.type === 'tool_result').map((b) => String(b.tool_use_id)),
  };
}

/**
 * Every LLM span of the main agent and of its subagents carries its input, told from the events
 * (no raw bodies here): what the stand-in was sent since the call before, as its request's last
 * message says: the prompt's text for a chain's first call, the tool results (by tool name and
 * id) after that. Returns how many spans it checked.
 */
function assertInputs(spans: StoredSpan[], label: string): number {
  let checked = 0;
  const tools = spans.filter((s) => s.span_name === 'claude_code.tool');
  for (const llm of spans.filter((s) => s.span_name === 'claude_code.llm_request' && s.status !== 500)) {
    const a = attrs(llm);
    // Side requests (a title, a background agent's summary, ...) are in no chain: no input from events.
    const source = a['query_source'] as string | undefined;
    if (a['agent_id'] === undefined ? !['sdk', undefined].includes(source) : !(source ?? 'agent:').startsWith('agent:'))
      continue;
    const served = stack.api.requests.find((r) => r.requestId === a['request_id'])!;
    // What the model got since the call before: the messages after the last assistant message.
    const messages = (served.body as { messages: { role: string; content: unknown }[] }).messages;
    const since = messages
      .slice(messages.map((m) => m.role).lastIndexOf('assistant') + 1)
      .map((m) => contentOf(m.content));
    const sent = { texts: since.flatMap((c) => c.texts), results: since.flatMap((c) => c.results) };
    const what = `${label}: the input of ${String(a['request_id'])} (${String(a['agent_id'] ?? 'main')})`;
    assert.equal(typeof a['gen_ai.input.messages'], 'string', what);
    const input = JSON.parse(a['gen_ai.input.messages'] as string) as {
      role: string;
      parts: Record<string, string>[];
    }[];
    assert.equal(typeof a['gen_ai.prompt'], 'string', `${what}: LLMFlow's input panel`);
    if (sent.results.length > 0) {
      assert.deepEqual(
        input.map((m) => m.role),
        sent.results.map(() => 'tool'),
        what,
      );
      assert.deepEqual(input.map((m) => m.parts[0]!['id']).sort(), [...sent.results].sort(), what);
      for (const m of input) {
        const tool = tools.find((t) => attrs(t)['tool_use_id'] === m.parts[0]!['id']);
        assert.equal(m.parts[0]!['name'], tool && attrs(tool)['tool_name'], `${what}: the tool's name`);
      }
    } else {
      assert.deepEqual(
        input.map((m) => m.role),
        ['user'],
        what,
      );
      const text = input[0]!.parts[0]!['content']!;
      assert.ok(
        sent.texts.some((t) => t.includes(text)),
        `${what}: ${text} in ${JSON.stringify(sent.texts)}`,
      );
    }
    checked += 1;
  }
  return checked;
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
    assert.ok(assertInputs(rows, c.label) > 0, `${c.label}: inputs to check`);
    // A subagent's totals are on its Agent call's tool span, foreground or background: no row of their own.
    assert.deepEqual(
      rows.filter((s) => s.span_name === 'claude_code.subagent_completed').map((s) => s.span_name),
      [],
      `${c.label}: no subagent_completed rows`,
    );
    for (const call of rows.filter((s) => s.span_name === 'claude_code.tool' && attrs(s)['tool_name'] === 'Agent'))
      assert.ok(
        Object.keys(attrs(call)).some((k) => k.startsWith('claude_code.subagent_completed.')),
        `${c.label}: the Agent call carries its subagent's totals`,
      );
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
