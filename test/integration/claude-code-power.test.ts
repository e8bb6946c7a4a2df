/**
 * What power users run, with the real Claude Code binary against the stand-in API, its events
 * through the bridge into a real LLMFlow: subagents (foreground, background, two in parallel),
 * project hooks, a 150 KB prompt, and an eight-prompt resumed session. Each is run twice, once
 * with Claude Code's own tracing on, and every trace LLMFlow holds from events must have the
 * shape of Claude Code's own: every LLM, tool and hook span under the same parent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NATIVE_TRACING, projectWithHooks, runClaude, type RunClaudeOptions } from '../support/claude';
import { useClaudeStack } from '../support/per-file';
import { startLlmflowGate, type LlmflowGate } from '../support/llmflow-gate';
import { attrs, startBridge, startRedis, waitFor, type StoredSpan } from '../support/peers';
import { assertSameTrees, sessionTraces } from '../support/session-traces';

const stack = useClaudeStack();

const ALLOWED = ['Bash(echo:*)', 'Read', 'Agent'];
const NATIVE = NATIVE_TRACING;

type Run = Omit<RunClaudeOptions, 'apiUrl' | 'otlpEndpoint' | 'protocol'>;
const run = (o: Run) =>
  runClaude({
    apiUrl: stack.api.url,
    otlpEndpoint: stack.bridge.url,
    protocol: 'http/protobuf',
    allowedTools: ALLOWED,
    ...o,
  });

async function bothWays(label: string, o: Run, traces: number, check?: (spans: StoredSpan[]) => void) {
  const events = await run(o);
  assert.equal(events.exitCode, 0, events.stderr);
  const native = await run({ ...o, env: { ...o.env, ...NATIVE } });
  assert.equal(native.exitCode, 0, native.stderr);
  await assertSameTrees(stack.llmflow, events.sessionId!, native.sessionId!, traces, label);
  check?.((await sessionTraces(stack.llmflow, events.sessionId!)).spans);
}

/** The subagent spans of a trace: those that carry the agent's id. */
const subagentSpans = (spans: StoredSpan[]) => spans.filter((s) => attrs(s)['gen_ai.agent.id'] !== undefined);

test('a foreground subagent nests under the Agent call that started it, its spans carrying its id and type', async () => {
  await bothWays('foreground', { prompt: 'Please SUBAGENT' }, 1, (spans) => {
    const sub = subagentSpans(spans);
    assert.ok(sub.some((s) => s.span_name === 'claude_code.llm_request'));
    for (const s of sub) {
      assert.match(String(attrs(s)['gen_ai.agent.id']), /^a[0-9a-f]{16}$/);
      assert.equal(attrs(s)['gen_ai.agent.name'], 'general-purpose');
      // Which rule places it depends on how Claude Code's batches split (agents.ts): `only_open`
      // once the events up to its start are in with its call the one open, `completion` when its
      // end comes first. Both are sound; the tree matching Claude Code's own is what counts.
      assert.ok(
        ['completion', 'only_open'].includes(String(attrs(s)['claude_code.agent.placement'])),
        String(attrs(s)['claude_code.agent.placement']),
      );
    }
  });
});

test('two subagents started in parallel by one message each nest under their own Agent call', async () => {
  await bothWays('parallel', { prompt: 'Please TWO_SUBAGENTS' }, 1, (spans) => {
    const byId = new Map(spans.map((s) => [s.id, s]));
    // Each subagent's tool ran its own echo, under the Agent call whose prompt asked for it.
    for (const letter of ['a', 'b']) {
      const tool = spans.find(
        (s) =>
          s.span_name === 'claude_code.tool' && String(attrs(s)['gen_ai.prompt'] ?? '').includes(`echo sub-${letter}`),
      )!;
      assert.ok(tool, `the tool of subagent ${letter}`);
      const call = byId.get(byId.get(tool.parent_id!)!.parent_id!)!;
      assert.equal(call.span_name, 'claude_code.tool');
      assert.match(String(attrs(call)['gen_ai.prompt']), new RegExp(`SUBTASK-${letter.toUpperCase()}`));
    }
  });
});

test('a background subagent nests under its Agent call in the trace of the prompt that started it', async () => {
  await bothWays('background', { prompt: 'Please BG_SUBAGENT' }, 2, (spans) => {
    const sub = subagentSpans(spans);
    assert.ok(sub.length > 0);
    const call = spans.find((s) => s.span_name === 'claude_code.tool' && attrs(s)['gen_ai.tool.name'] === 'Agent')!;
    assert.ok(
      sub.every((s) => s.trace_id === call.trace_id),
      "in the launching prompt's trace",
    );
    // `notification`, or `only_open` when its events came before the notification (as above).
    assert.ok(
      sub.every((s) => ['notification', 'only_open'].includes(String(attrs(s)['claude_code.agent.placement']))),
    );
  });
});

test("project hooks are claude_code.hook spans where Claude Code's detailed trace puts them", async () => {
  const o = { prompt: 'Run it USE_TOOL' };
  const events = await run({ ...o, cwd: projectWithHooks() });
  assert.equal(events.exitCode, 0, events.stderr);
  // Hook spans need the detailed beta, which sends everything to BETA_TRACING_ENDPOINT as OTLP/HTTP JSON.
  const native = await run({
    ...o,
    cwd: projectWithHooks(),
    env: { ...NATIVE, ENABLE_BETA_TRACING_DETAILED: '1', BETA_TRACING_ENDPOINT: stack.bridge.url },
  });
  assert.equal(native.exitCode, 0, native.stderr);
  await assertSameTrees(stack.llmflow, events.sessionId!, native.sessionId!, 1, 'hooks');
  const hooks = (await sessionTraces(stack.llmflow, events.sessionId!)).spans.filter(
    (s) => s.span_name === 'claude_code.hook',
  );
  assert.deepEqual(hooks.map((h) => attrs(h)['hook_name']).sort(), [
    'PostToolUse:Bash',
    'PreToolUse:Bash',
    'Stop',
    'UserPromptSubmit',
  ]);
  for (const h of hooks) {
    assert.equal(typeof attrs(h)['duration_ms'], 'number');
    assert.equal(attrs(h)['claude_code.hook.outcome'], 'success');
  }
});

test("a subagent's hooks sit under the Agent call that started it, as in Claude Code's detailed trace", async () => {
  const o = { prompt: 'Please SUBAGENT' };
  const events = await run({ ...o, cwd: projectWithHooks() });
  assert.equal(events.exitCode, 0, events.stderr);
  const native = await run({
    ...o,
    cwd: projectWithHooks(),
    env: { ...NATIVE, ENABLE_BETA_TRACING_DETAILED: '1', BETA_TRACING_ENDPOINT: stack.bridge.url },
  });
  assert.equal(native.exitCode, 0, native.stderr);
  await assertSameTrees(stack.llmflow, events.sessionId!, native.sessionId!, 1, 'subagent hooks');
  const { spans } = await sessionTraces(stack.llmflow, events.sessionId!);
  const byId = new Map(spans.map((s) => [s.id, s]));
  const bashHooks = spans.filter(
    (s) => s.span_name === 'claude_code.hook' && String(attrs(s)['hook_name']).endsWith(':Bash'),
  );
  assert.equal(bashHooks.length, 2);
  for (const h of bashHooks) assert.equal(byId.get(h.parent_id!)!.span_name, 'claude_code.tool.execution');
});

test('an eight-prompt resumed session: eight traces, each with every span in its place', async () => {
  const prompts = [
    'What is 2+2?',
    'Run it USE_TOOL',
    'Do TWO_TOOLS',
    'Go PARALLEL_TOOLS',
    'Please SUBAGENT',
    'Say, then run it TEXT_AND_TOOL',
    'Try REFUSED_TOOL',
    'Thanks',
  ];
  const sessions: string[] = [];
  for (const env of [{}, NATIVE]) {
    let session: string | undefined;
    for (const prompt of prompts) {
      const r = await run({ prompt, resume: session, env });
      assert.equal(r.exitCode, 0, r.stderr);
      session ??= r.sessionId;
      assert.equal(r.sessionId, session);
    }
    sessions.push(session!);
  }
  await assertSameTrees(stack.llmflow, sessions[0]!, sessions[1]!, prompts.length, 'resumed session');
});

test('a 150 KB prompt: its turn lands whole, the text cut to fit and marked, in LLMFlow and in an LLMFlow that takes 100 KB bodies', async () => {
  const pasted = `Why does this fail?\n${'2026-11-25T12:00:00Z ERROR worker: connection reset by peer (retrying)\n'.repeat(2_200)}`;
  assert.ok(pasted.length > 150_000);
  const gate: LlmflowGate = await startLlmflowGate(stack.llmflow.url, { maxBodyBytes: 100 * 1024 });
  // The default span limit (64 KiB) fits the gate; one set above it meets the gate's 413 and learns.
  const strictRedis = await startRedis();
  const strict = await startBridge({ REDIS_URL: strictRedis.url, LLMFLOW_URL: gate.url });
  // Its own Redis: bridges on one Redis share one queue, and the other's workers would take its batches.
  const looseRedis = await startRedis();
  const loose = await startBridge({ REDIS_URL: looseRedis.url, LLMFLOW_URL: gate.url, BRIDGE_SPAN_MAX_BYTES: '1MiB' });
  try {
    for (const [target, label] of [
      [stack.bridge, 'LLMFlow'],
      [strict, 'LLMFlow on express'],
      [loose, 'LLMFlow on express, spans up to 1 MiB'],
    ] as const) {
      const refusedBefore = gate.tooLarge;
      const r = await runClaude({
        apiUrl: stack.api.url,
        otlpEndpoint: target.url,
        protocol: 'http/protobuf',
        allowedTools: ALLOWED,
        prompt: '',
        stdin: pasted,
      });
      assert.equal(r.exitCode, 0, r.stderr);
      // The turn's spans may land one request after another (a span cut further after a 413): wait for root and call.
      const root = await waitFor(`${label}: the root and its LLM call`, async () => {
        const { spans } = await sessionTraces(stack.llmflow, r.sessionId!);
        return spans.some((s) => s.span_name === 'claude_code.llm_request') && spans.find((s) => !s.parent_id);
      });
      const a = attrs(root);
      assert.equal(a['prompt'], undefined, `${label}: the text once`);
      assert.ok(String(a['gen_ai.prompt']).startsWith('Why does this fail?'), label);
      assert.match(String(a['gen_ai.prompt']), /bytes trimmed\]$/, label);
      assert.deepEqual(a['ccbridge.trimmed.keys'], ['gen_ai.prompt'], label);
      assert.equal(a['prompt_length'], String(pasted.length), `${label}: the length it had`);
      const { spans, orphans } = await sessionTraces(stack.llmflow, r.sessionId!);
      assert.deepEqual(orphans, [], `${label}: no orphans`);
      // The first call's input is the prompt too, cut to fit as well.
      const call = attrs(spans.find((s) => s.span_name === 'claude_code.llm_request')!);
      assert.ok(String(call['gen_ai.prompt']).startsWith('Why does this fail?'), `${label}: the call's input`);
      assert.match(String(call['gen_ai.prompt']), /bytes trimmed\]$/, label);
      if (target === loose)
        assert.ok(gate.tooLarge > refusedBefore, 'the gate refused the span as too large before it was cut further');
      // LLMFlow stores the span's attributes with its resource's merged in.
      else
        assert.ok(
          root.attributes.length < 64 * 1024 + 4096,
          `${label}: under the default limit, ${root.attributes.length}`,
        );
    }
  } finally {
    await Promise.all([strict.stop(), loose.stop()]);
    await Promise.all([gate.stop(), strictRedis.stop(), looseRedis.stop()]);
  }
});
