/**
 * The real Claude Code binary, offline against a stand-in for the Anthropic Messages API, its
 * telemetry sent over every OTLP protocol straight to the bridge and through the real Collector
 * (the shipped config), into a real LLMFlow. Each run is checked as LLMFlow stores it: one trace
 * per interaction, the span tree the scenario calls for, each span once, no orphans. The same
 * scenarios run again with Claude Code's own beta tracing on, and the trees drawn from events
 * must match Claude Code's native trees one for one.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { runClaude, type OtlpProtocol } from '../support/claude';
import { startCollector, type CollectorPeer } from '../support/collector';
import { isEventSpan } from '../support/session-traces';
import { attrs, waitFor, type StoredSpan } from '../support/peers';
import { useClaudeStack } from '../support/per-file';

let collector: CollectorPeer;
// `after` hooks run in the order they are registered: the Collector stops before the bridge it sends to.
after(async () => {
  await collector?.stop();
});
const stack = useClaudeStack();
before(async () => {
  await stack.ready;
  collector = await startCollector({ bridgeUrl: stack.bridge.url });
});

/** What the stand-in's script makes Claude Code do, per interaction. */
const SCENARIO = {
  plain: { prompt: 'What is 2+2?', llm: 1, tools: 0, refused: 0, failedTools: 0, apiErrors: 0 },
  tool: { prompt: 'Run it USE_TOOL', llm: 2, tools: 1, refused: 0, failedTools: 0, apiErrors: 0 },
  textAndTool: { prompt: 'Say, then run it TEXT_AND_TOOL', llm: 2, tools: 1, refused: 0, failedTools: 0, apiErrors: 0 },
  twoTools: { prompt: 'Do TWO_TOOLS', llm: 2, tools: 2, refused: 0, failedTools: 1, apiErrors: 0 },
  parallel: { prompt: 'Go PARALLEL_TOOLS', llm: 2, tools: 3, refused: 0, failedTools: 0, apiErrors: 0 },
  refused: { prompt: 'Try REFUSED_TOOL', llm: 2, tools: 1, refused: 1, failedTools: 0, apiErrors: 0 },
  failedApi: { prompt: 'Now FAIL_ALWAYS', llm: 1, tools: 0, refused: 0, failedTools: 0, apiErrors: 1 },
} as const;
type Scenario = (typeof SCENARIO)[keyof typeof SCENARIO];

const ALLOWED = ['Bash(echo:*)', 'Read'];

const endpointOf = (target: 'bridge' | 'collector', protocol: OtlpProtocol) =>
  protocol === 'grpc'
    ? `http://127.0.0.1:${target === 'bridge' ? stack.bridge.grpcPort : collector.grpcAddress.split(':')[1]}`
    : target === 'bridge'
      ? stack.bridge.url
      : collector.httpUrl;

const drawnLikeClaudeCode = (trace: StoredSpan[]) => trace.filter((s) => !isEventSpan(s));

/** Every trace LLMFlow holds for a session, once each has its root and `want` spans. */
async function tracesOfSession(
  sessionId: string,
  roots: number,
  want: (trace: StoredSpan[]) => boolean,
): Promise<StoredSpan[][]> {
  return waitFor(
    `LLMFlow to hold the ${roots} trace(s) of session ${sessionId}`,
    async () => {
      const spans = await stack.llmflow.spans();
      const traceIds = new Set(spans.filter((s) => attrs(s)['session.id'] === sessionId).map((s) => s.trace_id));
      const traces = [...traceIds].map((id) => spans.filter((s) => s.trace_id === id));
      if (traces.length !== roots || !traces.every((t) => t.some((s) => !s.parent_id) && want(drawnLikeClaudeCode(t))))
        return undefined;
      return traces;
    },
    60_000,
  );
}

const countOf = (s: Scenario) => 1 + s.llm + 3 * s.tools - s.refused;

/** The checks every interaction's trace must pass, whatever its scenario. */
function assertTrace(trace: StoredSpan[], s: Scenario, label: string) {
  const roots = trace.filter((x) => !x.parent_id);
  assert.equal(roots.length, 1, `${label}: one root`);
  assert.equal(roots[0]!.span_name, 'claude_code.interaction', label);
  assert.equal(new Set(trace.map((x) => x.id)).size, trace.length, `${label}: each span once`);
  const ids = new Set(trace.map((x) => x.id));
  for (const x of trace) if (x.parent_id) assert.ok(ids.has(x.parent_id), `${label}: ${x.span_name} has its parent`);
  const llm = trace.filter((x) => x.span_name === 'claude_code.llm_request');
  assert.equal(llm.length, s.llm, `${label}: LLM spans`);
  assert.equal(llm.filter((x) => x.status === 500).length, s.apiErrors, `${label}: failed API calls`);
  for (const x of llm.filter((y) => y.status !== 500))
    assert.ok(x.model && x.prompt_tokens > 0 && x.completion_tokens > 0, `${label}: model and tokens`);
  const tools = trace.filter((x) => x.span_name === 'claude_code.tool');
  assert.equal(tools.length, s.tools, `${label}: tool spans`);
  assert.equal(
    tools.filter((x) => x.status === 500).length,
    s.refused + s.failedTools,
    `${label}: refused or failed tools`,
  );
  assert.equal(
    trace.filter((x) => x.span_name === 'claude_code.tool.blocked_on_user').length,
    s.tools,
    `${label}: decisions`,
  );
  assert.equal(drawnLikeClaudeCode(trace).length, countOf(s), `${label}: spans`);
}

const run = (
  prompt: string,
  endpoint: string,
  protocol: OtlpProtocol,
  extra: { resume?: string; env?: Record<string, string> } = {},
) => runClaude({ prompt, apiUrl: stack.api.url, otlpEndpoint: endpoint, protocol, allowedTools: ALLOWED, ...extra });

for (const target of ['bridge', 'collector'] as const) {
  for (const protocol of ['http/protobuf', 'http/json', 'grpc'] as const) {
    test(`Claude Code over ${protocol}, ${target === 'bridge' ? 'straight to the bridge' : 'through the Collector'}: one trace per interaction`, async () => {
      const r = await run(SCENARIO.tool.prompt, endpointOf(target, protocol), protocol);
      assert.equal(r.exitCode, 0, r.stderr);
      const [trace] = await tracesOfSession(r.sessionId!, 1, (t) => t.length >= countOf(SCENARIO.tool));
      assertTrace(trace!, SCENARIO.tool, `${target} ${protocol}`);
    });
  }
}

for (const [name, scenario] of Object.entries(SCENARIO)) {
  test(`Claude Code, ${name}: the trace drawn from events matches Claude Code's own trace one for one`, async () => {
    const events = await run(scenario.prompt, stack.bridge.url, 'http/protobuf');
    assert.equal(events.exitCode, scenario.apiErrors ? 1 : 0, events.stderr);
    const [fromEvents] = await tracesOfSession(events.sessionId!, 1, (t) => t.length >= countOf(scenario));
    assertTrace(fromEvents!, scenario, `${name} from events`);
    const root = attrs(fromEvents!.find((x) => !x.parent_id)!);
    assert.equal(root['claude_code.interaction.complete'], true, `${name}: complete`);
    assert.equal(root['claude_code.interaction.end'], scenario.apiErrors ? 'error' : 'response', `${name}: its end`);
    if (!scenario.apiErrors) assert.equal(root['gen_ai.completion'], events.result, `${name}: the turn's last answer`);

    const native = await run(scenario.prompt, stack.bridge.url, 'http/protobuf', {
      env: { CLAUDE_CODE_ENHANCED_TELEMETRY_BETA: '1', OTEL_TRACES_EXPORTER: 'otlp' },
    });
    const [fromNative] = await tracesOfSession(
      native.sessionId!,
      1,
      (t) => t.length >= countOf(scenario) - scenario.refused,
    );
    const shape = (trace: StoredSpan[]) => {
      const byId = new Map(trace.map((s) => [s.id, s]));
      return trace
        .map((s) => `${s.span_name} <- ${s.parent_id ? (byId.get(s.parent_id)?.span_name ?? 'MISSING') : '(root)'}`)
        .sort();
    };
    assert.deepEqual(shape(drawnLikeClaudeCode(fromEvents!)), shape(fromNative!));
  });
}

test('a resumed session (claude --resume) is a second interaction of the same session, in its own trace', async () => {
  const first = await run(SCENARIO.plain.prompt, stack.bridge.url, 'http/json');
  assert.equal(first.exitCode, 0, first.stderr);
  const resumed = await run(SCENARIO.tool.prompt, stack.bridge.url, 'http/json', { resume: first.sessionId! });
  assert.equal(resumed.exitCode, 0, resumed.stderr);
  assert.equal(resumed.sessionId, first.sessionId);
  const traces = await tracesOfSession(first.sessionId!, 2, (t) => t.length >= countOf(SCENARIO.plain));
  const size = (t: StoredSpan[]) => drawnLikeClaudeCode(t).length;
  const byLength = [...traces].sort((a, b) => size(a) - size(b));
  assertTrace(byLength[0]!, SCENARIO.plain, 'first run');
  await waitFor('the resumed interaction whole', async () =>
    (await tracesOfSession(first.sessionId!, 2, () => true)).some((t) => size(t) === countOf(SCENARIO.tool)),
  );
  const [, second] = (await tracesOfSession(first.sessionId!, 2, () => true)).sort((a, b) => size(a) - size(b));
  assertTrace(second!, SCENARIO.tool, 'resumed run');
});
