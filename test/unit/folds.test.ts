/**
 * Events that are no row of their own (mapping.ts): folded onto the row they belong to, whatever
 * batches they arrive in; an LLM span waits for its answer with its turn's root, never longer;
 * the root lists what went wrong. Over a real Redis, through the real process stage.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { StatusCode, type LogRecord } from '@ccbridge/otlp';
import { claudeEventsOf, problemLines } from '@ccbridge/claude-events';
import { logsOf, nativeTraceOf, SCENARIOS } from '../support/fixtures';
import { recordsOf, requestOf } from '../support/assembly';
import { drawTree, shapeOf, stopTreeRedis } from '../support/tree';

after(stopTreeRedis);

const attr = (r: LogRecord, key: string) => r.attributes!.find((a) => a.key === key)?.value;
const withAttr = (r: LogRecord, key: string, value: object): LogRecord => ({
  ...r,
  attributes: [...r.attributes!.filter((a) => a.key !== key), { key, value }],
});

for (const scenario of SCENARIOS) {
  test(`${scenario}, every event in a batch of its own: each LLM span still carries its answer, drawn once, in Claude Code's shape`, async () => {
    const request = logsOf('json', scenario);
    const spans = await drawTree(recordsOf(request).map((r) => requestOf(request, [r])));
    const native = nativeTraceOf(scenario).resourceSpans!.flatMap((rs) => rs.scopeSpans!.flatMap((ss) => ss.spans!));
    assert.deepEqual(shapeOf(spans), shapeOf(native));
    const answers = claudeEventsOf(request).events.filter((e) => e.name === 'assistant_response');
    assert.ok(answers.length > 0);
    for (const answer of answers) {
      const llm = spans.find(
        (s) => s.name === 'claude_code.llm_request' && s.attrs['request_id'] === answer.attributes['request_id'],
      );
      assert.equal(
        llm?.attrs['gen_ai.completion'],
        answer.attributes['response'],
        `the answer of ${answer.attributes['request_id']}`,
      );
    }
    assert.equal(spans.filter((s) => s.name === 'claude_code.assistant_response').length, 0);
    assert.equal(spans.filter((s) => !s.parentSpanId).length, 1);
  });
}

test('an LLM request that comes after its turn was drawn is sent at once, not held for a root that will not come', async () => {
  const request = logsOf('json', 'tool');
  const records = recordsOf(request);
  const api = records.find((r) => attr(r, 'event.name')?.stringValue === 'api_request')!;
  const late = withAttr(withAttr(api, 'event.sequence', { intValue: '1000' }), 'request_id', {
    stringValue: 'req_late',
  });
  const spans = await drawTree([request, requestOf(request, [late])]);
  assert.ok(spans.some((s) => s.name === 'claude_code.llm_request' && s.attrs['request_id'] === 'req_late'));
});

test('the root says what went wrong: a tool failing twice with the same input is one line that says so, an API error another', async () => {
  const request = logsOf('json', 'tool');
  const records = recordsOf(request);
  const result = records.find((r) => attr(r, 'event.name')?.stringValue === 'tool_result')!;
  const failed = withAttr(withAttr(result, 'success', { stringValue: 'false' }), 'error', {
    stringValue: 'Exit code 1',
  });
  const seqOf = (r: LogRecord) => Number(attr(r, 'event.sequence')?.intValue ?? attr(r, 'event.sequence')?.stringValue);
  const last = Math.max(...records.map(seqOf));
  // The same call again, later in the turn (new tool_use_id), and a side request that failed.
  const again = withAttr(withAttr(failed, 'event.sequence', { intValue: String(last + 1) }), 'tool_use_id', {
    stringValue: 'toolu_again',
  });
  const apiError = {
    ...result,
    body: { stringValue: 'claude_code.api_error' },
    attributes: [
      ...result.attributes!.filter((a) => ['session.id', 'prompt.id'].includes(a.key)),
      { key: 'event.name', value: { stringValue: 'api_error' } },
      { key: 'event.sequence', value: { intValue: String(last + 2) } },
      { key: 'error', value: { stringValue: 'Overloaded' } },
      { key: 'status_code', value: { stringValue: '529' } },
      { key: 'query_source', value: { stringValue: 'compact' } },
    ],
  };
  const spans = await drawTree([
    requestOf(request, [...records.map((r) => (r === result ? failed : r)), again, apiError]),
  ]);
  const root = spans.find((s) => !s.parentSpanId)!;
  assert.deepEqual(root.attrs['claude_code.interaction.problems'], [
    'tool_result: Bash failed: Exit code 1 (the same call with the same input failed 2 times)',
    'api_error: 529 Overloaded',
  ]);
  assert.notEqual(root.status?.code, StatusCode.ERROR, 'the turn itself ended with an answer');
});

test('problem lines: in order, repeats of one call counted, long errors cut', () => {
  const lines = problemLines([
    { order: 5, text: 'b', repeat: 'Read x' },
    { order: 1, text: 'a' },
    { order: 7, text: 'b', repeat: 'Read x' },
    { order: 6, text: 'c', repeat: 'Read y' },
    { order: 9, text: 'x'.repeat(500) },
  ]);
  assert.deepEqual(lines.slice(0, 3), ['a', 'b (the same call with the same input failed 2 times)', 'c']);
  assert.ok(lines[3]!.length <= 200 && lines[3]!.endsWith('…'));
});

test('the root lists the events folded onto it in order, with permission-mode changes and skills (fields as Claude Code 2.1.3xx names them)', async () => {
  const request = logsOf('json', 'tool');
  const records = recordsOf(request);
  const prompt = records.find((r) => attr(r, 'event.name')?.stringValue === 'user_prompt')!;
  const seq = Number(attr(prompt, 'event.sequence')?.intValue ?? attr(prompt, 'event.sequence')?.stringValue);
  const at = (offset: number, name: string, fields: Record<string, string>): LogRecord => ({
    ...prompt,
    body: { stringValue: `claude_code.${name}` },
    attributes: [
      ...prompt.attributes!.filter((a) => ['session.id', 'prompt.id'].includes(a.key)),
      { key: 'event.name', value: { stringValue: name } },
      { key: 'event.sequence', value: { intValue: String(seq + offset) } },
      ...Object.entries(fields).map(([key, v]) => ({ key, value: { stringValue: v } })),
    ],
  });
  // Numbered between the prompt and its first decision: the later numbers move up by two.
  const shifted = records.map((r) => {
    const n = Number(attr(r, 'event.sequence')?.intValue ?? attr(r, 'event.sequence')?.stringValue);
    return n > seq ? withAttr(r, 'event.sequence', { intValue: String(n + 2) }) : r;
  });
  const extra = [
    at(2, 'skill_activated', { 'skill.name': 'review', invocation_trigger: 'user' }),
    at(1, 'permission_mode_changed', { from_mode: 'default', to_mode: 'plan' }),
  ];
  const spans = await drawTree([requestOf(request, [...shifted, ...extra])]);
  const root = spans.find((s) => !s.parentSpanId)!;
  assert.deepEqual(root.attrs['claude_code.interaction.permission_modes'], ['default -> plan']);
  assert.deepEqual(root.attrs['claude_code.interaction.skills'], ['review']);
  const names = (root.attrs['claude_code.interaction.events'] as string[]).map((l) => l.split(' ')[0]);
  assert.deepEqual(names.slice(-2), ['permission_mode_changed', 'skill_activated'], 'in the order they came');
  assert.deepEqual(
    spans.filter((s) => /permission_mode|skill/.test(s.name)),
    [],
    'no rows of their own',
  );
});
