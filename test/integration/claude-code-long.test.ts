/**
 * Turns that take longer than the old idle window (30 s), with the real Claude Code binary and
 * the bridge at its shipped defaults: a model that takes 31 s per answer, and a tool that runs
 * for 31 s. Each turn must appear in LLMFlow as one complete tree (the root covers every child,
 * its totals equal its children, prompt and answer present), drawn from the turn's own end.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runClaude } from '../support/claude';
import { attrs, waitFor, type StoredSpan } from '../support/peers';
import { useClaudeStack } from '../support/per-file';

/** Longer than the old idle window (BRIDGE_INTERACTION_IDLE_MS, 30 s), which quiet no longer means over. */
const LONGER_THAN_IDLE_MS = 31_000;

// The shipped defaults: no lifecycle setting is given.
const stack = useClaudeStack({}, { slowMs: LONGER_THAN_IDLE_MS, longToolSeconds: LONGER_THAN_IDLE_MS / 1000 });

async function completeTurn(prompt: string, allowedTools: string[]) {
  const r = await runClaude({
    prompt,
    apiUrl: stack.api.url,
    otlpEndpoint: stack.bridge.url,
    protocol: 'http/protobuf',
    allowedTools,
    timeoutMs: 180_000,
  });
  assert.equal(r.exitCode, 0, r.stderr);
  const exited = Date.now();
  const trace = await waitFor(
    'the turn with its root in LLMFlow',
    async () => {
      const spans = await stack.llmflow.spans();
      const ours = spans.filter((s) => attrs(s)['session.id'] === r.sessionId);
      return ours.some((s) => !s.parent_id) ? ours : undefined;
    },
    30_000,
  );
  return { trace, sinceExitMs: Date.now() - exited, durationMs: r.durationMs };
}

function assertComplete(trace: StoredSpan[]) {
  const roots = trace.filter((s) => !s.parent_id);
  assert.equal(roots.length, 1);
  const root = roots[0]!;
  const a = attrs(root);
  assert.equal(a['claude_code.interaction.complete'], true);
  assert.equal(a['claude_code.interaction.end'], 'response');
  assert.equal(typeof a['gen_ai.prompt'], 'string', 'the prompt');
  assert.equal(a['gen_ai.completion'], 'The tool answered.', 'the answer');
  const children = trace.filter((s) => s.parent_id);
  const llm = children.filter((s) => s.span_name === 'claude_code.llm_request');
  const tools = children.filter((s) => s.span_name === 'claude_code.tool');
  assert.equal(llm.length, 2);
  assert.equal(tools.length, 1);
  assert.equal(a['claude_code.interaction.llm_requests'], llm.length);
  assert.equal(a['claude_code.interaction.tool_calls'], tools.length);
  assert.equal(
    a['claude_code.interaction.output_tokens'],
    llm.reduce((n, s) => n + s.completion_tokens, 0),
  );
  // LLMFlow keeps start times (ms) and durations: the root covers each child.
  const end = (s: StoredSpan) => s.timestamp + (s.duration_ms ?? 0);
  for (const c of children) {
    assert.ok(c.timestamp >= root.timestamp, `the root starts before ${c.span_name}`);
    assert.ok(end(c) <= end(root) + 1, `the root ends after ${c.span_name}`);
  }
  return root;
}

test('a model that answers 31 s late per request: one complete tree, drawn once the turn ends', async () => {
  const { trace, durationMs } = await completeTurn('Think hard SLOW_ANSWERS', ['Bash(echo:*)']);
  assert.ok(durationMs > 2 * LONGER_THAN_IDLE_MS, 'the turn took longer than the old idle window, twice');
  const root = assertComplete(trace);
  assert.ok((root.duration_ms ?? 0) >= 2 * LONGER_THAN_IDLE_MS, 'the root spans both slow requests');
});

test('a tool that runs 31 s: one complete tree, drawn once the turn ends', async () => {
  const { trace } = await completeTurn('Run the suite LONG_TOOL', ['Bash(node:*)']);
  const root = assertComplete(trace);
  const tool = trace.find((s) => s.span_name === 'claude_code.tool')!;
  assert.equal(tool.status, 200, 'the tool ran and succeeded');
  assert.ok((tool.duration_ms ?? 0) >= LONGER_THAN_IDLE_MS, 'the tool span holds the whole run');
  assert.ok((root.duration_ms ?? 0) >= LONGER_THAN_IDLE_MS);
});
