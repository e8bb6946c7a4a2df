/** What each LLM call got as input, from the events (packages/claude-events/src/inputs.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  INPUT_MAX,
  callInputs,
  inputFactOf,
  placedSpans,
  withInput,
  type Attributes,
  type InputFact,
  type Placement,
} from '@ccbridge/claude-events';
import { attributesToRecord, recordToAttributes } from '@ccbridge/otlp';

const call = (seq: number, requestId: string, extra: Attributes = {}): Attributes => ({
  'event.name': 'api_request',
  'event.sequence': seq,
  request_id: requestId,
  query_source: 'sdk',
  ...extra,
});
const result = (seq: number, requestId: string, name: string, extra: Attributes = {}): Attributes => ({
  'event.name': 'tool_result',
  'event.sequence': seq,
  request_id: requestId,
  tool_name: name,
  tool_use_id: `toolu_${seq}`,
  success: 'true',
  tool_result_size_bytes: '3',
  ...extra,
});
const facts = (events: Attributes[]): InputFact[] => events.flatMap((a) => inputFactOf(a) ?? []);
const always = () => true;
const messages = (a: Attributes | undefined) =>
  a && (JSON.parse(a['gen_ai.input.messages'] as string) as { role: string; parts: Record<string, unknown>[] }[]);

test("the main chain: the prompt, then the previous call's tool results; side requests are in no chain", () => {
  const inputs = callInputs(
    facts([
      call(1, 'r1'),
      result(2, 'r1', 'Bash', { tool_input: '{"command":"echo hi"}' }),
      call(3, 'title', { query_source: 'generate_session_title' }),
      result(4, 'r1', 'Read', { success: 'false', error: 'no such file' }),
      call(5, 'r2'),
    ]),
    { seq: 0, text: 'Do it' },
    always,
  );
  assert.deepEqual(messages(inputs.get('r1')), [{ role: 'user', parts: [{ type: 'text', content: 'Do it' }] }]);
  assert.deepEqual(messages(inputs.get('r2')), [
    {
      role: 'tool',
      parts: [
        {
          type: 'tool_call_response',
          id: 'toolu_2',
          name: 'Bash',
          response: { input: { command: 'echo hi' }, outcome: 'ok (3 bytes)' },
        },
      ],
    },
    {
      role: 'tool',
      parts: [
        { type: 'tool_call_response', id: 'toolu_4', name: 'Read', response: { outcome: 'failed: no such file' } },
      ],
    },
  ]);
  assert.equal(
    inputs.get('r2')!['gen_ai.prompt'],
    'Bash {"command":"echo hi"} → ok (3 bytes)\nRead → failed: no such file',
  );
  assert.equal(inputs.has('title'), false, 'a side request gets no input here');
});

test('a refused tool is a result; a subagent is a chain of its own, its summary request in none', () => {
  const sub = { agent_id: 'a1', query_source: 'agent:builtin:general-purpose' };
  const inputs = callInputs(
    facts([
      { 'event.name': 'tool_decision', 'event.sequence': 2, request_id: 'r1', tool_name: 'Bash', decision: 'reject' },
      call(1, 'r1'),
      call(3, 's1', sub),
      result(4, 's1', 'Bash', sub),
      call(5, 'sum', { ...sub, query_source: 'agent_summary' }),
      call(6, 's2', sub),
      call(7, 'r2'),
    ]),
    { seq: 0, text: 'Try' },
    always,
  );
  assert.equal(
    (messages(inputs.get('r2'))![0]!.parts[0]!['response'] as { outcome: string }).outcome,
    'refused (reject)',
  );
  assert.equal(inputs.has('s1'), false, "a subagent's first call: its Agent call's prompt (agents.ts)");
  assert.equal(messages(inputs.get('s2'))![0]!.parts[0]!['name'], 'Bash');
  assert.equal(inputs.has('sum'), false);
});

test('an input is told only when every number between the call two before (or the prompt) and the call is known', () => {
  const events = facts([call(1, 'r1'), result(3, 'r1', 'Bash'), call(5, 'r2')]);
  const known = (missing: number) => (lo: number, hi: number) => !(lo < missing && missing < hi);
  assert.ok(callInputs(events, { seq: 0, text: 'x' }, known(99)).has('r2'));
  // 2 or 4 might be another call of the chain, or another result: not told.
  assert.equal(callInputs(events, { seq: 0, text: 'x' }, known(4)).has('r2'), false);
  assert.equal(callInputs(events, { seq: 0, text: 'x' }, known(2)).has('r2'), false);
  assert.ok(callInputs(events, { seq: 0, text: 'x' }, known(2)).has('r1'), 'nothing missing before the first call');
  assert.equal(callInputs(events, { seq: -2, text: 'x' }, known(-1)).has('r1'), false, 'a call may hide before it');
  assert.equal(callInputs(events, undefined, always).has('r1'), false, 'no prompt: nothing for the first call');
});

test("a tool's input and error are kept cut; raw bodies' messages win over the events'", () => {
  const [fact] = facts([result(2, 'r1', 'Bash', { tool_input: 'x'.repeat(INPUT_MAX * 3) })]);
  assert.ok(fact!.input!.length < INPUT_MAX + 50, 'cut');
  assert.match(fact!.input!, /cut, 6000 characters/);
  const fromBody = { 'gen_ai.input.messages': '[{"role":"user","parts":[]}]' };
  assert.deepEqual(withInput(fromBody, { 'gen_ai.input.messages': '[]', 'gen_ai.prompt': 'p' }), {
    ...fromBody,
    'gen_ai.prompt': 'p',
  });
});

test("a placed subagent's calls: the first its Agent call's prompt (held while that may still come), the next its tool results", () => {
  const sub = { agent_id: 'a1', query_source: 'agent:builtin:general-purpose', 'session.id': 's' };
  const held = (spanId: string, a: Attributes) =>
    JSON.stringify({
      spanId,
      name: a['event.name'] === 'api_request' ? 'claude_code.llm_request' : 'claude_code.tool',
      kind: 1,
      start: '1',
      end: '2',
      attributes: recordToAttributes(a),
      resource: [],
    });
  const spans = [held('c1', call(3, 's1', sub)), held('c2', call(6, 's2', sub))];
  const kept = facts([call(3, 's1', sub), result(4, 's1', 'Bash', sub)]);
  const placement = (o: Partial<Placement>): Placement => ({
    traceKey: 'prompt/p1',
    parentSpanId: 'exec',
    rule: 'completion',
    inputs: kept,
    ...o,
  });
  const sent = (o: Partial<Placement>) =>
    placedSpans(placement(o), 'a1', spans).spans.flatMap((rs) =>
      rs.scopeSpans!.flatMap((ss) => ss.spans!.map((s) => ({ id: s.spanId, a: attributesToRecord(s.attributes) }))),
    );
  const waiting = sent({ awaitingPrompt: 3 });
  assert.deepEqual(
    waiting.map((s) => s.id),
    ['c2'],
    'the first call waits for its prompt',
  );
  assert.match(waiting[0]!.a['gen_ai.prompt'] as string, /^Bash/);
  const done = sent({ prompt: { text: 'SUBTASK run echo', seq: 3 } });
  assert.deepEqual(
    done.map((s) => [s.id, s.a['gen_ai.prompt']]),
    [
      ['c1', 'SUBTASK run echo'],
      ['c2', 'Bash → ok (3 bytes)'],
    ],
  );
});
