import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { attributesToRecord, recordToAttributes, StatusCode, type AttributeValue } from '@ccbridge/otlp';
import { assignTurns, claudeEventsOf, planBatch } from '@ccbridge/claude-events';
import { FIXTURES, SCENARIOS, eventCounts, logsOf, nativeTraceOf, type Capture } from '../support/fixtures';
import { drawTree, isEventSpan, shapeOf, stopTreeRedis } from '../support/tree';
import { Harness, recordsOf, requestOf, treeOf } from '../support/assembly';
import { startRedis } from '../support/peers';
import { itemsOf, loadSessions, requestOfItems, type SessionCopy } from '../support/race';
import { Redis } from 'ioredis';

after(stopTreeRedis);

const CAPTURES: Capture[] = ['json', 'protobuf'];

for (const scenario of SCENARIOS) {
  for (const capture of CAPTURES) {
    test(`${capture}/${scenario}: the tree has the native trace's shape`, async () => {
      const native = nativeTraceOf(scenario).resourceSpans!.flatMap((rs) => rs.scopeSpans!.flatMap((ss) => ss.spans!));
      const ours = await drawTree([logsOf(capture, scenario)]);
      assert.deepEqual(shapeOf(ours), shapeOf(native));
      const toolNames = (spans: { name: string; attributes?: { key: string; value?: { stringValue?: string } }[] }[]) =>
        spans
          .filter((s) => s.name === 'claude_code.tool')
          .map((s) => s.attributes!.find((a) => a.key === 'gen_ai.tool.name')?.value?.stringValue)
          .sort();
      assert.deepEqual(toolNames(ours), toolNames(native));
      const decisions = (spans: { name: string; attributes?: { key: string; value?: { stringValue?: string } }[] }[]) =>
        spans
          .filter((s) => s.name === 'claude_code.tool.blocked_on_user')
          .map((s) =>
            ['decision', 'source'].map((k) => s.attributes!.find((a) => a.key === k)?.value?.stringValue).join('/'),
          )
          .sort();
      assert.deepEqual(decisions(ours), decisions(native));
      const failed = (spans: { name: string; status?: { code?: number } }[]) =>
        spans
          .filter((s) => s.status?.code === StatusCode.ERROR)
          .map((s) => s.name)
          .sort();
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
        // Every input token, the cache's included (GenAI conventions); the parts stay as they were.
        const input = ['input_tokens', 'cache_read_tokens', 'cache_creation_tokens'].reduce(
          (n, k) => n + Number(e.attributes[k] ?? 0),
          0,
        );
        assert.ok(
          Number(e.attributes['cache_read_tokens']) + Number(e.attributes['cache_creation_tokens']) > 0,
          'the capture used the cache',
        );
        assert.equal(span.attrs['gen_ai.usage.prompt_tokens'], input);
        assert.equal(span.attrs['gen_ai.usage.input_tokens'], input);
        assert.equal(span.attrs['gen_ai.usage.cache_read.input_tokens'], Number(e.attributes['cache_read_tokens']));
        assert.equal(
          span.attrs['gen_ai.usage.cache_creation.input_tokens'],
          Number(e.attributes['cache_creation_tokens']),
        );
        assert.equal(span.attrs['gen_ai.usage.cost'], Number(e.attributes['cost_usd']));
        assert.equal(span.attrs['gen_ai.usage.completion_tokens'], Number(e.attributes['output_tokens']));
        assert.equal(span.attrs['gen_ai.usage.output_tokens'], Number(e.attributes['output_tokens']));
        assert.equal(span.attrs['cost_usd'], e.attributes['cost_usd'], 'the event fields are kept');
        assert.equal(span.attrs['session.id'], e.attributes['session.id']);
        assert.equal(BigInt(span.endTimeUnixNano), e.timeNs);
        assert.equal(
          BigInt(span.endTimeUnixNano) - BigInt(span.startTimeUnixNano),
          BigInt(Number(e.attributes['duration_ms'])) * 1_000_000n,
        );
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
      assert.equal(
        root.attrs['claude_code.interaction.llm_requests'],
        eventCounts(request).get('claude_code.api_request'),
      );
      assert.equal(root.attrs['claude_code.interaction.tool_calls'], tools.length);
      const inputs = claudeEventsOf(request)
        .events.filter((e) => e.name === 'api_request')
        .reduce(
          (n, e) =>
            n +
            ['input_tokens', 'cache_read_tokens', 'cache_creation_tokens'].reduce(
              (m, k) => m + Number(e.attributes[k] ?? 0),
              0,
            ),
          0,
        );
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
    return planBatch(events, assignTurns(events, new Map()));
  };
  const [a, b] = [plan(), plan()];
  assert.deepEqual(a, b);
});

/** The root's ordered list of the events folded onto it: [name, its own fields]. */
const rootEvents = (root: { attrs: Record<string, unknown> }) =>
  ((root.attrs['claude_code.interaction.events'] as string[] | undefined) ?? []).map((line) => {
    const at = line.indexOf(' ');
    return [line.slice(0, at), JSON.parse(line.slice(at + 1)) as Record<string, unknown>] as const;
  });

test('session-level events (no prompt.id) are no rows: the root lists them in order, with a start-up summary', async () => {
  const request = logsOf('json', 'simple');
  const { events } = claudeEventsOf(request);
  const sessionLevel = events.filter((e) => e.attributes['prompt.id'] === undefined);
  assert.ok(sessionLevel.length > 0);
  const spans = await drawTree([request]);
  const root = spans.find((s) => !s.parentSpanId)!;
  assert.deepEqual(
    spans.filter((s) => isEventSpan(s)).map((s) => s.name),
    [],
    'no row of their own',
  );
  const listed = rootEvents(root);
  assert.deepEqual(
    listed.map(([name]) => name),
    sessionLevel.map((e) => e.name),
    'every one, in order',
  );
  for (const [i, e] of sessionLevel.entries()) {
    for (const [k, v] of Object.entries(e.attributes))
      if (
        ![
          'session.id',
          'event.name',
          'user.id',
          'terminal.type',
          'anthropic.provider',
          'anthropic.custom_base_url',
        ].includes(k)
      )
        assert.deepEqual(listed[i]![1][k], v, `${e.name}: ${k} kept`);
  }
  assert.deepEqual(
    root.attrs['claude_code.startup.plugins'],
    sessionLevel.filter((e) => e.name === 'plugin_loaded').map((e) => e.attributes['plugin.name']),
  );
  assert.deepEqual(root.attrs['claude_code.startup.settings_sources'], ['none']);
  assert.deepEqual(root.events ?? [], [], 'LLMFlow drops span events: none are drawn');
  const plan = planBatch(events, assignTurns(events, new Map()));
  assert.equal(plan.unassigned, 0);
  // Their prompt is found in Redis (lua/turns.lua T.apply), even when it is in the same batch: the rule has one home.
  assert.ok(plan.pending.length > 0);
});

test("a tool call's stand-in is held only while its tool_result is not in the batch", () => {
  const request = logsOf('json', 'tool');
  const standIns = (events: ReturnType<typeof claudeEventsOf>['events']) =>
    planBatch(events, assignTurns(events, new Map())).updates.flatMap((u) =>
      u.held.filter(([, json]) => json.startsWith('{"standIn":true')).map(([id]) => id),
    );
  const { events } = claudeEventsOf(request);
  const decided = events.filter((e) => e.name === 'tool_decision' && !e.attributes['agent_id']).length;
  assert.ok(decided > 0);
  assert.deepEqual(standIns(events), [], 'each drawn by its tool_result in the same batch');
  assert.equal(standIns(events.filter((e) => e.name !== 'tool_result')).length, decided, 'held until it comes');
});

test('with BRIDGE_EVENT_ROWS=each, session-level events are instant spans under the root, as before', async () => {
  const request = logsOf('json', 'simple');
  const { events } = claudeEventsOf(request);
  const sessionLevel = events.filter((e) => e.attributes['prompt.id'] === undefined);
  const spans = await drawTree([request], { eventRows: 'each' });
  const root = spans.find((s) => !s.parentSpanId)!;
  for (const e of sessionLevel) {
    const span = spans.find(
      (s) => s.attrs['event.sequence'] === e.attributes['event.sequence'] && s.attrs['event.name'] === e.name,
    );
    assert.ok(span, e.name);
    assert.equal(span.name, `claude_code.${e.name}`);
    assert.equal(span.parentSpanId, root.spanId);
    assert.equal(span.startTimeUnixNano, span.endTimeUnixNano);
    assert.ok(isEventSpan(span));
  }
  assert.ok(
    spans.some((s) => s.name === 'claude_code.assistant_response'),
    'the answer its own span too',
  );
  assert.equal(root.attrs['claude_code.interaction.events'], undefined);
});

/** The simple scenario in two batches: its events before any prompt (start-up), then the rest. */
function startUpSplit() {
  const request = logsOf('json', 'simple');
  const records = request.resourceLogs![0]!.scopeLogs![0]!.logRecords!;
  const isSessionLevel = (r: (typeof records)[number]) => !r.attributes!.some((a) => a.key === 'prompt.id');
  const part = (keep: (r: (typeof records)[number]) => boolean) => ({
    resourceLogs: [{ ...request.resourceLogs![0]!, scopeLogs: [{ logRecords: records.filter(keep) }] }],
  });
  return {
    early: part(isSessionLevel),
    rest: part((r) => !isSessionLevel(r)),
    startUp: records.filter(isSessionLevel).length,
  };
}

test('events before any prompt of their session are held, and listed on the root of its first prompt', async () => {
  const { early, rest, startUp } = startUpSplit();
  assert.ok(planBatch(claudeEventsOf(early).events, [undefined]).pending.length > 0, 'held when nothing places them');
  const spans = await drawTree([early, rest]);
  const root = spans.find((s) => !s.parentSpanId)!;
  assert.equal(rootEvents(root).length, startUp);
  assert.deepEqual(
    spans.filter((s) => s.attrs['prompt.id'] === undefined && s.parentSpanId),
    [],
    'no rows of their own',
  );
});

test('a start-up span delivered again after it was adopted is not held again: nothing is left pending, nothing sent twice', async () => {
  const { early, rest, startUp } = startUpSplit();
  const redis = await startRedis();
  const client = new Redis(redis.url);
  const h = new Harness({ url: redis.url });
  const pendingSpans = async () => {
    let n = 0;
    for (const key of await client.keys(`{${h.namespace}:*}:session:*:pending`)) n += await client.hlen(key);
    return n;
  };
  try {
    await h.process(early, 'early');
    assert.equal(await pendingSpans(), startUp, 'held until their prompt is known');
    await h.process(rest, 'rest');
    assert.equal(rootEvents(h.roots()[0]!).length, startUp, 'adopted by the root drawn');
    assert.equal(await pendingSpans(), 0);
    const sent = h.exported.length;
    // The same start-up events again, in a job of their own (a sender that retried a request).
    await h.process(early, 'early again');
    assert.equal(await pendingSpans(), 0, 'the copies are not held again for a prompt drawn already');
    assert.equal(h.exported.length, sent, 'nothing sent again');
  } finally {
    h.disconnect();
    client.disconnect();
    await redis.stop();
  }
});

test('start-up spans an older bridge held (no `at` and `seq` ahead of the span) go to their first prompt as the new ones do', async () => {
  const { early, rest, startUp } = startUpSplit();
  const redis = await startRedis();
  const client = new Redis(redis.url);
  const h = new Harness({ url: redis.url });
  try {
    await h.process(early);
    // Held as the bridge before this one held them: the span, then `at` (lua/turns.lua decodes those).
    let rewritten = 0;
    for (const key of await client.keys('*')) {
      if ((await client.type(key)) !== 'hash') continue;
      for (const [field, json] of Object.entries(await client.hgetall(key))) {
        if (!json.startsWith('{"at":"')) continue;
        const { at, seq: _seq, ...span } = JSON.parse(json) as Record<string, unknown>;
        await client.hset(key, field, JSON.stringify({ ...span, at }));
        rewritten += 1;
      }
    }
    assert.equal(rewritten, startUp, 'every start-up span held in the older form');
    await h.process(rest);
    const root = h.roots()[0]!;
    assert.ok(root, 'the root drawn');
    assert.equal(rootEvents(root).length, startUp);
  } finally {
    h.disconnect();
    client.disconnect();
    await redis.stop();
  }
});

test("a turn an older bridge began (its prompt in the turn's state, not apart) is drawn with its prompt", async () => {
  const request = logsOf('json', 'simple');
  const records = request.resourceLogs![0]!.scopeLogs![0]!.logRecords!;
  const isAnswer = (r: (typeof records)[number]) =>
    r.attributes!.some((a) => a.key === 'event.name' && a.value?.stringValue === 'assistant_response');
  const part = (keep: (r: (typeof records)[number]) => boolean) => ({
    resourceLogs: [{ ...request.resourceLogs![0]!, scopeLogs: [{ logRecords: records.filter(keep) }] }],
  });
  const redis = await startRedis();
  const client = new Redis(redis.url);
  const h = new Harness({ url: redis.url });
  try {
    await h.process(part((r) => !isAnswer(r)));
    // Held as the bridge before this one held it: the text in the turn's state hash itself.
    let moved = 0;
    for (const key of await client.keys('*:t')) {
      const text = await client.hgetall(key);
      await client.hset(key.slice(0, -':t'.length), text);
      await client.del(key);
      moved += Object.keys(text).length;
    }
    assert.equal(moved, 1, "the prompt moved into the turn's state");
    await h.process(part(isAnswer));
    const root = h.roots()[0]!;
    assert.ok(root, 'the root drawn');
    const said = (name: string, key: string) =>
      records
        .find((r) => r.attributes!.some((a) => a.key === 'event.name' && a.value?.stringValue === name))!
        .attributes!.find((a) => a.key === key)!.value!.stringValue;
    assert.equal(root.attrs['gen_ai.prompt'], said('user_prompt', 'prompt'), 'its prompt');
    assert.ok(said('user_prompt', 'prompt'), 'the capture holds the prompt text');
    assert.equal(root.attrs['gen_ai.completion'], said('assistant_response', 'response'), 'its completion');
  } finally {
    h.disconnect();
    client.disconnect();
    await redis.stop();
  }
});

test('spans an older bridge held (attributes as OTLP key-values) are drawn as the ones held now', async () => {
  const redis = await startRedis();
  const client = new Redis(redis.url);
  let rewritten = 0;
  try {
    for (const scenario of SCENARIOS) {
      const request = logsOf('json', scenario);
      const records = recordsOf(request);
      for (let cut = 1; cut < records.length; cut += 2) {
        const trees = [];
        for (const older of [false, true]) {
          const h = new Harness({ url: redis.url });
          try {
            await h.process(requestOf(request, records.slice(0, cut)));
            // Every held span's attributes as the bridge before this one wrote them, the JSON's head as it was.
            for (const key of older ? await client.keys(`*${h.namespace}*`) : []) {
              if ((await client.type(key)) !== 'hash') continue;
              for (const [field, json] of Object.entries(await client.hgetall(key))) {
                if (!json.includes('"attributes":{')) continue;
                const held = JSON.parse(json) as { attributes: Record<string, AttributeValue> };
                await client.hset(
                  key,
                  field,
                  JSON.stringify({ ...held, attributes: recordToAttributes(held.attributes) }),
                );
                rewritten += 1;
              }
            }
            await h.process(requestOf(request, records.slice(cut)));
            await h.advance(3_600_000);
            trees.push(treeOf(h.stored().values()));
          } finally {
            h.disconnect();
          }
        }
        assert.deepEqual(trees[1], trees[0], `${scenario}, cut after ${cut} records`);
      }
    }
    assert.ok(rewritten >= 10, `held spans rewritten: ${rewritten}`);
  } finally {
    client.disconnect();
    await redis.stop();
  }
});

test("a session's state an older bridge kept (its numbers by number, not by time, adopted start-up spans marked in `pending`, no list of the subagents that hold spans or may still link, Agent calls' spans and totals in the session's `callSpans`) goes on as the state kept now", async () => {
  const redis = await startRedis();
  const client = new Redis(redis.url);
  const rewritten = { seqat: 0, holding: 0, open: 0, adopted: 0, calls: 0 };
  try {
    for (const session of loadSessions().filter((s) => ['resumed', 'parallel', 'background'].includes(s.scenario))) {
      const items = itemsOf({ requests: session.requests } as SessionCopy, 0);
      for (let cut = 1; cut < items.length; cut++) {
        const trees = [];
        for (const older of [false, true]) {
          const h = new Harness({ url: redis.url });
          try {
            await h.process(requestOfItems(items.slice(0, cut)));
            for (const key of older ? await client.keys(`*${h.namespace}*`) : []) {
              if (key.endsWith(':seqat')) {
                // By number, each member `seq:ms`.
                for (const member of await client.zrange(key, 0, -1)) {
                  const [seq, ms] = member.split(':').map(Number);
                  rewritten.seqat += await client.zadd(`${key.slice(0, -':seqat'.length)}:seq`, seq!, `${seq}:${ms}`);
                }
                await client.del(key);
              } else if (key.endsWith(':holding') || key.endsWith(':open')) {
                rewritten[key.endsWith(':open') ? 'open' : 'holding'] += await client.del(key);
              } else if (key.endsWith(':adopted')) {
                const pending = `${key.slice(0, -':adopted'.length)}:pending`;
                for (const id of await client.smembers(key)) rewritten.adopted += await client.hset(pending, id, '-');
                await client.del(key);
              } else if (/\/call:[^/]*:(spans|sent)$/.test(key)) {
                // An Agent call's holder, as the session's `callSpans` fields (`-` once sent) and
                // its deadline member `session<TAB>call`.
                const [, tag, session, call, kind] = /^(\{[^}]*\}):agent:(.*)\/call:(.*):(spans|sent)$/.exec(key)!;
                const older = `${tag}:session:${session}:callspans`;
                const parts =
                  kind === 'sent'
                    ? Object.fromEntries((await client.smembers(key)).map((f) => [f, '-']))
                    : await client.hgetall(key);
                for (const f of ['span', 'totals'])
                  if (parts[f] !== undefined) rewritten.calls += await client.hset(older, `${f}:${call}`, parts[f]);
                const member = `\t${session}\tcall:${call}`;
                const at = await client.zscore(`${tag}:calls:deadlines`, member);
                if (at !== null) {
                  await client.zrem(`${tag}:calls:deadlines`, member);
                  await client.zadd(`${tag}:calls:deadlines`, at, `${session}\t${call}`);
                }
                await client.del(key);
              }
            }
            await h.process(requestOfItems(items.slice(cut)));
            await h.advance(3_600_000);
            trees.push(treeOf(h.stored().values()));
            // ... and nothing of the older form is left (read again at every batch of the session).
            const left: string[] = [];
            for (const key of older ? await client.keys(`*${h.namespace}*`) : []) {
              if (key.endsWith(':seq')) left.push(key);
              // (`-`: an older bridge's mark of a call part sent, left when nothing comes for the call again.)
              if (key.endsWith(':pending') || key.endsWith(':callspans'))
                for (const [id, v] of Object.entries(await client.hgetall(key)))
                  if (key.endsWith(':pending') ? v === '-' : v !== '-') left.push(`${key} ${id}`);
            }
            assert.deepEqual(
              left,
              [],
              `older form left: ${session.scenario}, cut after ${cut} of ${items.length} records`,
            );
          } finally {
            h.disconnect();
          }
        }
        assert.deepEqual(trees[1], trees[0], `${session.scenario}, cut after ${cut} of ${items.length} records`);
      }
    }
    for (const [what, n] of Object.entries(rewritten)) assert.ok(n > 0, `${what} rewritten: ${n}`);
  } finally {
    client.disconnect();
    await redis.stop();
  }
});

test('every event is accounted for: a span, folded onto the span it belongs to, listed on the root, or part of its hook span', async () => {
  for (const scenario of SCENARIOS) {
    const request = logsOf('protobuf', scenario);
    const { events } = claudeEventsOf(request);
    const spans = await drawTree([request]);
    const root = spans.find((s) => !s.parentSpanId)!;
    const drawnFrom = new Set(spans.map((s) => JSON.stringify([s.attrs['event.name'], s.attrs['event.sequence']])));
    for (const e of events) {
      if (e.name === 'user_prompt' || e.name === 'hook_execution_start') continue;
      const seq = e.attributes['event.sequence'];
      const folded = spans.some((s) => s.attrs[`claude_code.${e.name}.event.sequence`] === seq);
      const listed = rootEvents(root).some(([name, own]) => name === e.name && own['event.sequence'] === seq);
      assert.ok(
        drawnFrom.has(JSON.stringify([e.name, seq])) || folded || listed,
        `${scenario}: ${e.name} #${JSON.stringify(seq)}`,
      );
    }
  }
});

test('a refused tool still appears as a tool span that says it was refused', async () => {
  const request = logsOf('json', 'tool');
  const records = request.resourceLogs![0]!.scopeLogs![0]!.logRecords!;
  const decision = records.find((r) => r.body?.stringValue === 'claude_code.tool_decision')!;
  const refused = {
    ...decision,
    attributes: decision.attributes!.map((a) =>
      a.key === 'decision' ? { key: 'decision', value: { stringValue: 'reject' } } : a,
    ),
  };
  // A refused tool never runs: no tool_result, so nothing is numbered for one.
  const kept = records
    .map((r) => (r === decision ? refused : r))
    .filter((r) => r.body?.stringValue !== 'claude_code.tool_result')
    .map((r, i) => ({
      ...r,
      attributes: r.attributes!.map((a) =>
        a.key === 'event.sequence' ? { key: a.key, value: { intValue: String(i) } } : a,
      ),
    }));
  const spans = await drawTree([
    { resourceLogs: [{ ...request.resourceLogs![0]!, scopeLogs: [{ logRecords: kept }] }] },
  ]);
  const tool = spans.find((s) => s.name === 'claude_code.tool')!;
  assert.equal(tool.status?.code, StatusCode.ERROR);
  assert.match(tool.status?.message ?? '', /refused/);
  const ids = new Set(spans.map((s) => s.spanId));
  assert.ok(spans.every((s) => !s.parentSpanId || ids.has(s.parentSpanId)));
  assert.equal(attributesToRecord(tool.attributes)['gen_ai.tool.name'], 'Bash');
});

test("what LLMFlow shows: long text once per span, a tool's input in its input panel, helper spans not typed as tools", async () => {
  const request = logsOf('json', 'tool');
  const { events } = claudeEventsOf(request);
  const spans = await drawTree([request]);
  const root = spans.find((s) => !s.parentSpanId)!;
  const prompt = events.find((e) => e.name === 'user_prompt')!.attributes['prompt'];
  assert.equal(root.attrs['gen_ai.prompt'], prompt);
  assert.equal(root.attrs['prompt'], undefined, 'not also as prompt');
  assert.equal(root.attrs['prompt_text'], undefined, 'nor as prompt_text');
  const result = events.find((e) => e.name === 'tool_result')!;
  const tool = spans.find((s) => s.name === 'claude_code.tool')!;
  assert.equal(tool.attrs['gen_ai.prompt'], result.attributes['tool_input']);
  assert.equal(tool.attrs['tool_input'], undefined);
  assert.equal(tool.attrs['traceloop.span.kind'], 'tool');
  for (const name of ['claude_code.tool.execution', 'claude_code.tool.blocked_on_user']) {
    const helper = spans.find((s) => s.name === name)!;
    assert.equal(helper.attrs['traceloop.span.kind'], 'task', name);
    assert.equal(helper.attrs['tool_input'], undefined, `${name} does not repeat the input`);
    assert.equal(helper.attrs['gen_ai.tool.call.id'], result.attributes['tool_use_id']);
  }
  // Each answer is on the LLM request that gave it, its text as the output (gen_ai.completion and the conventions' messages).
  const answers = events.filter((e) => e.name === 'assistant_response');
  assert.ok(answers.length > 0);
  for (const answer of answers) {
    const llm = spans.find(
      (s) => s.name === 'claude_code.llm_request' && s.attrs['request_id'] === answer.attributes['request_id'],
    )!;
    assert.equal(llm.attrs['gen_ai.completion'], answer.attributes['response']);
    assert.deepEqual(JSON.parse(llm.attrs['gen_ai.output.messages'] as string), [
      { role: 'assistant', parts: [{ type: 'text', content: answer.attributes['response'] }] },
    ]);
    assert.equal(llm.attrs['claude_code.assistant_response.event.sequence'], answer.attributes['event.sequence']);
    assert.equal(llm.attrs['claude_code.assistant_response.message.uuid'], answer.attributes['message.uuid']);
  }
  assert.deepEqual(
    spans.filter((s) => s.name === 'claude_code.assistant_response'),
    [],
    'no row of its own',
  );
});

test('a hook invocation is one claude_code.hook span: event, name, duration and outcome', async () => {
  const request = logsOf('json', 'simple');
  const records = request.resourceLogs![0]!.scopeLogs![0]!.logRecords!;
  const prompt = records.find((r) => r.body?.stringValue === 'claude_code.user_prompt')!;
  const at = (ms: number) => String(BigInt(prompt.timeUnixNano!) + BigInt(ms) * 1_000_000n);
  const attr = (key: string, value: string | number) => ({
    key,
    value: typeof value === 'number' ? { intValue: String(value) } : { stringValue: value },
  });
  const base = prompt.attributes!.filter((a) => ['session.id', 'prompt.id'].includes(a.key));
  const seq = records.length;
  const hook = (name: string, offset: number, extra: { key: string; value: object }[]) => ({
    timeUnixNano: at(offset),
    body: { stringValue: `claude_code.${name}` },
    attributes: [
      ...base,
      attr('event.name', name),
      attr('event.sequence', seq + offset),
      attr('hook_event', 'PreToolUse'),
      attr('hook_name', 'PreToolUse:Bash'),
      attr('num_hooks', '2'),
      ...extra,
    ],
  });
  const hooks = [
    hook('hook_execution_start', 1, []),
    hook('hook_execution_complete', 2, [
      attr('total_duration_ms', 40),
      attr('num_success', 1),
      attr('num_blocking', 0),
      attr('num_non_blocking_error', 1),
      attr('num_cancelled', 0),
    ]),
  ];
  const spans = await drawTree([
    { resourceLogs: [{ ...request.resourceLogs![0]!, scopeLogs: [{ logRecords: [...records, ...hooks] }] }] },
  ]);
  const drawn = spans.filter((s) => s.name === 'claude_code.hook');
  assert.equal(drawn.length, 1, 'start and complete are one span');
  assert.deepEqual(
    spans.filter((s) => s.attrs['event.name'] === 'hook_execution_start').map((s) => s.name),
    [],
    'the start draws no span of its own',
  );
  const [span] = drawn;
  assert.equal(span!.parentSpanId, spans.find((s) => !s.parentSpanId)!.spanId);
  assert.equal(span!.attrs['hook_event'], 'PreToolUse');
  assert.equal(span!.attrs['hook_name'], 'PreToolUse:Bash');
  assert.equal(span!.attrs['duration_ms'], 40);
  assert.equal(BigInt(span!.endTimeUnixNano) - BigInt(span!.startTimeUnixNano), 40_000_000n);
  assert.equal(span!.attrs['claude_code.hook.outcome'], 'error');
  assert.equal(span!.status?.code, StatusCode.ERROR);
  assert.ok(!isEventSpan(span!));
});

test('a duration no clock gives (1e308, NaN, negative) draws an instant span, never a failed batch', () => {
  const request = logsOf('json', 'two-tools');
  const records = request.resourceLogs![0]!.scopeLogs![0]!.logRecords!;
  const withDuration = records.filter((r) => r.attributes!.some((a) => a.key === 'duration_ms'));
  assert.ok(withDuration.length > 0);
  for (const value of [
    { doubleValue: 1e308 },
    { doubleValue: Number.MAX_VALUE },
    { stringValue: 'NaN' },
    { intValue: '-5' },
    { doubleValue: 1.7e12 * 1000 },
  ]) {
    const changed = records.map((r) => ({
      ...r,
      attributes: r.attributes!.map((a) => (a.key === 'duration_ms' ? { key: a.key, value } : a)),
    }));
    const { events } = claudeEventsOf({
      resourceLogs: [{ ...request.resourceLogs![0]!, scopeLogs: [{ logRecords: changed }] }],
    });
    const spans = planBatch(events, assignTurns(events, new Map())).resourceSpans.flatMap((rs) =>
      rs.scopeSpans!.flatMap((ss) => ss.spans!),
    );
    const timed = spans.filter((s) => s.attributes?.some((a) => a.key === 'duration_ms'));
    assert.ok(timed.length >= withDuration.length, JSON.stringify(value));
    for (const s of timed) {
      assert.equal(s.startTimeUnixNano, s.endTimeUnixNano, `${s.name} with duration ${JSON.stringify(value)}`);
      assert.ok(BigInt(s.startTimeUnixNano) > 0n);
    }
  }
});
