import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { attributesToRecord, StatusCode } from '@ccbridge/otlp';
import { assignInteractions, claudeEventsOf, planBatch } from '@ccbridge/claude-events';
import { FIXTURES, SCENARIOS, eventCounts, logsOf, nativeTraceOf, type Capture } from '../support/fixtures';
import { drawTree, shapeOf, stopTreeRedis } from '../support/tree';

after(stopTreeRedis);

const CAPTURES: Capture[] = ['json', 'protobuf'];

for (const scenario of SCENARIOS) {
  for (const capture of CAPTURES) {
    test(`${capture}/${scenario}: the tree has the native trace's shape`, async () => {
      const native = nativeTraceOf(scenario).resourceSpans!.flatMap((rs) => rs.scopeSpans!.flatMap((ss) => ss.spans!));
      const ours = await drawTree([logsOf(capture, scenario)]);
      assert.deepEqual(shapeOf(ours), shapeOf(native));
      const toolNames = (spans: { name: string; attributes?: { key: string; value?: { stringValue?: string } }[] }[]) =>
        spans.filter((s) => s.name === 'claude_code.tool').map((s) => s.attributes!.find((a) => a.key === 'gen_ai.tool.name')?.value?.stringValue).sort();
      assert.deepEqual(toolNames(ours), toolNames(native));
      const decisions = (spans: { name: string; attributes?: { key: string; value?: { stringValue?: string } }[] }[]) =>
        spans.filter((s) => s.name === 'claude_code.tool.blocked_on_user')
          .map((s) => ['decision', 'source'].map((k) => s.attributes!.find((a) => a.key === k)?.value?.stringValue).join('/')).sort();
      assert.deepEqual(decisions(ours), decisions(native));
      const failed = (spans: { name: string; status?: { code?: number } }[]) => spans.filter((s) => s.status?.code === StatusCode.ERROR).map((s) => s.name).sort();
      assert.deepEqual(failed(ours), failed(native));
    });

    test(`${capture}/${scenario}: one root, every parent present, ids unique and in one trace`, async () => {
      const spans = await drawTree([logsOf(capture, scenario)]);
      const roots = spans.filter((s) => !s.parentSpanId);
      assert.equal(roots.length, 1);
      assert.equal(roots[0]!.name, 'claude_code.interaction');
      const ids = new Set(spans.map((s) => s.spanId));
      assert.equal(ids.size, spans.length);
      for (const s of spans) {
        if (s.parentSpanId) assert.ok(ids.has(s.parentSpanId), `${s.name} has its parent`);
        assert.equal(s.traceId, roots[0]!.traceId);
        assert.match(s.spanId, /^[0-9a-f]{16}$/);
      }
    });

    test(`${capture}/${scenario}: an LLM span per api_request with model and tokens, timed by the event`, async () => {
      const request = logsOf(capture, scenario);
      const events = claudeEventsOf(request).events.filter((e) => e.name === 'api_request');
      const llm = (await drawTree([request])).filter((s) => s.name === 'claude_code.llm_request');
      assert.equal(llm.length, eventCounts(request).get('claude_code.api_request'));
      for (const e of events) {
        const span = llm.find((s) => s.attrs['request_id'] === e.attributes['request_id'])!;
        assert.ok(span, 'a span for each request');
        assert.equal(span.attrs['gen_ai.system'], 'anthropic');
        assert.equal(span.attrs['gen_ai.request.model'], e.attributes['model']);
        assert.equal(span.attrs['gen_ai.usage.prompt_tokens'], Number(e.attributes['input_tokens']));
        assert.equal(span.attrs['gen_ai.usage.input_tokens'], Number(e.attributes['input_tokens']));
        assert.equal(span.attrs['gen_ai.usage.completion_tokens'], Number(e.attributes['output_tokens']));
        assert.equal(span.attrs['gen_ai.usage.output_tokens'], Number(e.attributes['output_tokens']));
        assert.equal(span.attrs['cost_usd'], e.attributes['cost_usd'], 'the event fields are kept');
        assert.equal(span.attrs['session.id'], e.attributes['session.id']);
        assert.equal(BigInt(span.endTimeUnixNano), e.timeNs);
        assert.equal(BigInt(span.endTimeUnixNano) - BigInt(span.startTimeUnixNano), BigInt(Number(e.attributes['duration_ms'])) * 1_000_000n);
      }
    });

    test(`${capture}/${scenario}: a tool span per tool_result, and the root holds prompt, answer and totals`, async () => {
      const request = logsOf(capture, scenario);
      const spans = await drawTree([request]);
      const tools = spans.filter((s) => s.name === 'claude_code.tool');
      assert.equal(tools.length, eventCounts(request).get('claude_code.tool_result') ?? 0);
      for (const t of tools) {
        assert.equal(t.attrs['gen_ai.operation.name'], 'execute_tool');
        assert.equal(t.status?.code, t.attrs['success'] === 'false' ? StatusCode.ERROR : StatusCode.OK);
      }
      const root = spans.find((s) => !s.parentSpanId)!;
      const prompt = claudeEventsOf(request).events.find((e) => e.name === 'user_prompt')!;
      assert.equal(root.attrs['gen_ai.prompt'], prompt.attributes['prompt']);
      const answer = readFileSync(path.join(FIXTURES, capture, scenario, 'answer.txt'), 'utf8').trim();
      assert.equal(root.attrs['gen_ai.completion'], answer);
      assert.equal(root.attrs['claude_code.interaction.llm_requests'], eventCounts(request).get('claude_code.api_request'));
      assert.equal(root.attrs['claude_code.interaction.tool_calls'], tools.length);
      const inputs = claudeEventsOf(request).events.filter((e) => e.name === 'api_request').reduce((n, e) => n + Number(e.attributes['input_tokens']), 0);
      assert.equal(root.attrs['claude_code.interaction.input_tokens'], inputs);
      assert.equal(root.attrs['gen_ai.usage.prompt_tokens'], undefined, 'no double counting in LLMFlow');
      const children = spans.filter((s) => s.parentSpanId);
      assert.ok(children.every((s) => BigInt(s.startTimeUnixNano) >= BigInt(root.startTimeUnixNano) - 1_000_000_000n));
      assert.ok(children.every((s) => BigInt(s.endTimeUnixNano) <= BigInt(root.endTimeUnixNano)));
    });
  }
}

test('ids are derived, not random: the same batch maps to the same spans', async () => {
  const plan = () => {
    const { events } = claudeEventsOf(logsOf('json', 'two-tools'));
    return planBatch(events, assignInteractions(events, new Map()));
  };
  const [a, b] = [plan(), plan()];
  assert.deepEqual(a, b);
});

test('session-level events (no prompt.id) become events on the root of the session\'s prompt', async () => {
  const request = logsOf('json', 'simple');
  const { events } = claudeEventsOf(request);
  const sessionLevel = events.filter((e) => e.attributes['prompt.id'] === undefined);
  assert.ok(sessionLevel.length > 0);
  const root = (await drawTree([request])).find((s) => !s.parentSpanId)!;
  const names = (root.events ?? []).map((e) => e.name);
  for (const e of sessionLevel) assert.ok(names.includes(`claude_code.${e.name}`), e.name);
  const plan = planBatch(events, assignInteractions(events, new Map()));
  assert.equal(plan.unassigned, 0);
  assert.equal(plan.pending.length, 0);
});

test('every event is accounted for: a span, a root field or a root span event', async () => {
  for (const scenario of SCENARIOS) {
    const request = logsOf('protobuf', scenario);
    const { events } = claudeEventsOf(request);
    const spans = await drawTree([request]);
    const root = spans.find((s) => !s.parentSpanId)!;
    const drawnFrom = new Set([
      ...spans.map((s) => `${s.attrs['event.name'] ?? ''}/${s.attrs['event.sequence'] ?? ''}`),
      ...(root.events ?? []).map((e) => {
        const a = attributesToRecord(e.attributes);
        return `${a['event.name']}/${a['event.sequence']}`;
      }),
    ]);
    for (const e of events) {
      if (e.name === 'user_prompt') continue; // the root itself
      assert.ok(drawnFrom.has(`${e.name}/${e.attributes['event.sequence']}`), `${scenario}: ${e.name} #${e.attributes['event.sequence']}`);
    }
  }
});

test('a refused tool still appears as a tool span that says it was refused', async () => {
  const request = logsOf('json', 'tool');
  const records = request.resourceLogs![0]!.scopeLogs![0]!.logRecords!;
  const decision = records.find((r) => r.body?.stringValue === 'claude_code.tool_decision')!;
  const refused = {
    ...decision,
    attributes: decision.attributes!.map((a) => (a.key === 'decision' ? { key: 'decision', value: { stringValue: 'reject' } } : a)),
  };
  // A refused tool never runs: no tool_result, so nothing is numbered for one.
  const kept = records.map((r) => (r === decision ? refused : r)).filter((r) => r.body?.stringValue !== 'claude_code.tool_result')
    .map((r, i) => ({ ...r, attributes: r.attributes!.map((a) => (a.key === 'event.sequence' ? { key: a.key, value: { intValue: String(i) } } : a)) }));
  const spans = await drawTree([{ resourceLogs: [{ ...request.resourceLogs![0]!, scopeLogs: [{ logRecords: kept }] }] }]);
  const tool = spans.find((s) => s.name === 'claude_code.tool')!;
  assert.equal(tool.status?.code, StatusCode.ERROR);
  assert.match(tool.status?.message ?? '', /refused/);
  const ids = new Set(spans.map((s) => s.spanId));
  assert.ok(spans.every((s) => !s.parentSpanId || ids.has(s.parentSpanId)));
  assert.equal(attributesToRecord(tool.attributes)['gen_ai.tool.name'], 'Bash');
});
