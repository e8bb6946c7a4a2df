import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KEEP_ALL, claudeEventsOf, createRedactor, hashValue, nativeSpansToForward } from '@ccbridge/claude-events';
import { attributesToRecord, type ResourceSpans } from '@ccbridge/otlp';
import { SCENARIOS, logsOf, nativeTraceOf } from '../support/fixtures';

const spansOf = (rs: ResourceSpans[]) => rs.flatMap((r) => (r.scopeSpans ?? []).flatMap((ss) => ss.spans ?? []));

for (const scenario of SCENARIOS) {
  test(`native/${scenario}: Claude Code's own spans are forwarded whole, with the names LLMFlow reads added`, () => {
    const native = nativeTraceOf(scenario).resourceSpans!;
    const forwarded = nativeSpansToForward(native, 'prefer', createRedactor(KEEP_ALL));
    const before = spansOf(native);
    const after = spansOf(forwarded);
    assert.deepEqual(
      after.map((s) => s.spanId),
      before.map((s) => s.spanId),
    );
    for (const span of after) {
      const a = attributesToRecord(span.attributes);
      const original = attributesToRecord(before.find((s) => s.spanId === span.spanId)!.attributes);
      for (const [k, v] of Object.entries(original)) assert.deepEqual(a[k], v, `${span.name} keeps ${k}`);
      if (span.name === 'claude_code.llm_request') {
        const input = ['input_tokens', 'cache_read_tokens', 'cache_creation_tokens'].reduce(
          (n, k) => n + Number(original[k] ?? 0),
          0,
        );
        assert.ok(input > Number(original['input_tokens']), 'the capture used the cache');
        assert.equal(a['gen_ai.usage.prompt_tokens'], input);
        assert.equal(a['gen_ai.usage.completion_tokens'], original['output_tokens']);
        assert.equal(a['gen_ai.usage.input_tokens'], input);
      }
      if (span.name === 'claude_code.interaction') {
        assert.equal(a['gen_ai.prompt'], original['user_prompt']);
        assert.equal(a['traceloop.span.kind'], 'agent');
      }
      if (span.name === 'claude_code.tool') assert.equal(a['traceloop.span.kind'], 'tool');
    }
    assert.equal(
      spansOf(nativeSpansToForward(native, 'events', createRedactor(KEEP_ALL))).length,
      0,
      "'events' leaves them to the events",
    );
  });

  test(`native/${scenario}: with tracing on, every Claude Code event of an interaction carries trace context`, () => {
    const { events } = claudeEventsOf(logsOf('native', scenario));
    for (const e of events.filter((x) => x.attributes['prompt.id'] !== undefined)) assert.ok(e.traced, e.name);
    const { events: plain } = claudeEventsOf(logsOf('json', scenario));
    assert.ok(plain.every((e) => !e.traced));
  });
}

test('privacy: prompts, tool details and user ids can be hashed or dropped', () => {
  const { events } = claudeEventsOf(logsOf('json', 'two-tools'));
  const redact = createRedactor({ prompts: 'hash', toolDetails: 'drop', userIds: 'hash' });
  const prompt = events.find((e) => e.name === 'user_prompt')!;
  const p = redact.record(prompt.attributes);
  assert.equal(p['prompt'], hashValue(prompt.attributes['prompt']!));
  assert.match(String(p['prompt']), /^sha256:[0-9a-f]{32}$/);
  assert.equal(p['user.id'], hashValue(prompt.attributes['user.id']!));
  assert.equal(p['session.id'], prompt.attributes['session.id'], 'other fields untouched');
  const result = events.find((e) => e.name === 'tool_result' && e.attributes['tool_parameters'] !== undefined)!;
  const r = redact.record(result.attributes);
  assert.equal(r['tool_parameters'], undefined);
  assert.equal(r['tool_input'], undefined);
  assert.equal(r['tool_name'], result.attributes['tool_name']);
  const response = events.find((e) => e.name === 'assistant_response')!;
  assert.notEqual(redact.record(response.attributes)['response'], response.attributes['response']);
  // Raw API bodies hold the whole conversation: they are prompts too.
  const body = redact.record({
    ...response.attributes,
    body: '{"messages":[{"role":"user","content":"secret"}]}',
    request_body_id: 'b1',
  });
  assert.match(String(body['body']), /^sha256:/);
  assert.equal(body['request_body_id'], 'b1');

  const native = nativeSpansToForward(nativeTraceOf('two-tools').resourceSpans!, 'prefer', redact);
  const hashed = new Map<string, number>();
  for (const span of spansOf(native)) {
    const a = attributesToRecord(span.attributes);
    assert.equal(a['full_command'], undefined);
    assert.equal(a['file_path'], undefined);
    for (const key of ['user_prompt', 'gen_ai.prompt', 'user.id']) {
      if (!(key in a)) continue;
      assert.match(String(a[key]), /^sha256:/, `${span.name}: ${key}`);
      hashed.set(key, (hashed.get(key) ?? 0) + 1);
    }
  }
  // Each kind of value was there to hash: the interaction span holds the prompt, spans the user.
  for (const key of ['user_prompt', 'gen_ai.prompt', 'user.id'])
    assert.ok((hashed.get(key) ?? 0) > 0, `some span carried ${key}`);
  assert.equal(createRedactor(KEEP_ALL).active, false);
});
