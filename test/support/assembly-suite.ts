/**
 * Interaction assembly and its lifecycle over a real Redis, under event streams as they really
 * arrive: split into many batches, out of order, repeated, taken by two workers at once, held
 * back for minutes, never arriving, late after the root was drawn, many sessions in one batch,
 * resumed and interrupted sessions, and events without prompt.id. The clock is the test's.
 *
 * The same tests run on a single redis-server (assembly.test.ts) and on a real three-master
 * Redis Cluster (assembly-cluster.test.ts).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_LIFECYCLE, promptKeyOf, rootSpanIdFor } from '@ccbridge/claude-events';
import { StatusCode, attributesToRecord, type LogRecord } from '@ccbridge/otlp';
import { SHARDS, shardOf } from '@ccbridge/redis';
import { SCENARIOS, logsOf, type Capture, type Scenario } from './fixtures';
import {
  Harness,
  prng,
  recordsOf,
  requestOf,
  shuffle,
  treeOf,
  type CollectedSpan,
  type HarnessOptions,
  type RedisAt,
} from './assembly';

export interface RedisUnderTest {
  at: RedisAt;
  stop(): Promise<unknown>;
}

const MINUTE = 60_000;
const name = (r: LogRecord) => r.body?.stringValue?.replace('claude_code.', '');
const attr = (r: LogRecord, key: string) => r.attributes?.find((a) => a.key === key)?.value;

/**
 * A copy of records as another prompt (or session): new ids, times shifted, and with `seqFrom`
 * its event.sequence renumbered from there in record order (as one process would number them).
 */
export function variant(
  records: LogRecord[],
  o: { tag: string; shiftMs?: number; seqFrom?: number; session?: string; promptId?: boolean },
): LogRecord[] {
  const shift = (t?: string) => (t ? String(BigInt(t) + BigInt(o.shiftMs ?? 0) * 1_000_000n) : t);
  return records.map((r, i) => ({
    ...r,
    timeUnixNano: shift(r.timeUnixNano),
    observedTimeUnixNano: shift(r.observedTimeUnixNano),
    attributes: r.attributes!.flatMap((a) => {
      const v = a.value?.stringValue;
      if (a.key === 'prompt.id')
        return o.promptId === false ? [] : [{ key: a.key, value: { stringValue: `${v}-${o.tag}` } }];
      // Older Claude Code marks neither prompts nor numbers.
      if (a.key === 'event.sequence' && o.promptId === false) return [];
      if (a.key === 'event.sequence' && o.seqFrom !== undefined)
        return [{ key: a.key, value: { intValue: String(o.seqFrom + i) } }];
      if (a.key === 'session.id' && o.session) return [{ key: a.key, value: { stringValue: o.session } }];
      if (['request_id', 'tool_use_id', 'message.uuid'].includes(a.key))
        return [{ key: a.key, value: { stringValue: `${v}-${o.tag}` } }];
      return [a];
    }),
  }));
}

/** Splits records into batches of 1 to 4 at random points, shuffles them, and repeats some. */
function deliveries(records: LogRecord[], random: () => number): LogRecord[][] {
  const shuffled = shuffle(records, random);
  const batches: LogRecord[][] = [];
  for (let i = 0; i < shuffled.length;) {
    const size = 1 + Math.floor(random() * 4);
    batches.push(shuffled.slice(i, i + size));
    i += size;
  }
  return shuffle([...batches, ...batches.filter(() => random() < 0.3)], random);
}

/** Asserts the root is whole: it covers every span of its trace, and its totals count them. */
function assertWholeRoot(spans: CollectedSpan[], root: CollectedSpan, what: string, answered = true) {
  const children = spans.filter((s) => s.traceId === root.traceId && s.parentSpanId);
  for (const c of children) {
    assert.ok(
      BigInt(c.startTimeUnixNano) >= BigInt(root.startTimeUnixNano),
      `${what}: the root starts before ${c.name}`,
    );
    assert.ok(BigInt(c.endTimeUnixNano) <= BigInt(root.endTimeUnixNano), `${what}: the root ends after ${c.name}`);
  }
  const count = (n: string) => children.filter((s) => s.name === n).length;
  assert.equal(
    root.attrs['claude_code.interaction.llm_requests'],
    count('claude_code.llm_request'),
    `${what}: llm_requests`,
  );
  assert.equal(root.attrs['claude_code.interaction.tool_calls'], count('claude_code.tool'), `${what}: tool_calls`);
  assert.equal(root.attrs['claude_code.interaction.complete'], true, `${what}: complete`);
  assert.equal(typeof root.attrs['gen_ai.prompt'], 'string', `${what}: the prompt`);
  if (answered) assert.equal(typeof root.attrs['gen_ai.completion'], 'string', `${what}: the answer`);
  else assert.equal(root.attrs['gen_ai.completion'], undefined, `${what}: no answer`);
}

export function defineAssemblyTests(label: string, start: () => Promise<RedisUnderTest>) {
  let redis: RedisUnderTest;
  const harnesses: Harness[] = [];
  const harness = (options?: HarnessOptions) => {
    const h = new Harness(redis.at, options);
    harnesses.push(h);
    return h;
  };
  const sibling = (h: Harness) => {
    const s = h.sibling();
    harnesses.push(s);
    return s;
  };

  before(async () => {
    redis = await start();
  });
  after(async () => {
    for (const h of harnesses) h.disconnect();
    await redis?.stop();
  });

  /** The tree of records processed in one batch, by a harness of its own. */
  async function wholeTree(records: LogRecord[], template = logsOf('json', 'simple')) {
    const h = harness();
    await h.process(requestOf(template, records));
    return treeOf(h.stored().values());
  }

  for (const scenario of SCENARIOS) {
    for (const capture of ['json', 'protobuf'] as Capture[]) {
      test(`${label}: ${capture}/${scenario}: split, reordered and repeated batches taken by two workers give the whole tree, drawn once, on evidence alone`, async () => {
        const request = logsOf(capture, scenario);
        const whole = await wholeTree(recordsOf(request), request);
        const root = Object.values(whole).filter((s) => (s as { parent: unknown }).parent === null);
        assert.equal(
          root.length,
          1,
          'the whole capture draws its root at once: it holds its end marker and every number',
        );
        for (let seed = 1; seed <= 12; seed++) {
          const random = prng(seed * 7919 + scenario.length);
          const h = harness();
          const other = sibling(h);
          const batches = deliveries(recordsOf(request), random);
          await Promise.all([
            (async () => {
              for (const b of batches.filter((_, i) => i % 2 === 0)) await h.process(requestOf(request, b));
            })(),
            (async () => {
              for (const b of batches.filter((_, i) => i % 2 === 1)) await other.process(requestOf(request, b));
            })(),
          ]);
          // No clock moved and no timer round ran: the events alone drew the root.
          assert.deepEqual(treeOf(h.stored().values()), whole, `seed ${seed}`);
          assert.equal(
            h.exported.filter((s) => !s.parentSpanId).length,
            1,
            `seed ${seed}: the root is sent exactly once`,
          );
        }
      });
    }
  }

  test(`${label}: a call that lasts minutes keeps its root waiting, and the root is whole once the turn ends`, async () => {
    const request = logsOf('json', 'tool');
    const records = recordsOf(request);
    const lastCall = records.map(name).lastIndexOf('api_request');
    const h = harness();
    await h.process(requestOf(request, records.slice(0, lastCall)));
    // Far past the old idle window, short of the turn timeout: the turn is still in progress.
    assert.equal(await h.advance(20 * MINUTE), 0);
    assert.equal(await h.advance(30 * MINUTE), 0);
    assert.equal(h.roots().length, 0);
    await h.process(requestOf(request, records.slice(lastCall)));
    const [root] = h.roots();
    assert.ok(root, 'drawn as soon as the end marker came');
    assertWholeRoot([...h.stored().values()], root, 'long call');
    assert.equal(root.attrs['claude_code.interaction.end'], 'response');
  });

  test(`${label}: an answer that calls a tool and has text (an assistant_response mid-turn) ends nothing`, async () => {
    const request = logsOf('json', 'tool');
    const records = recordsOf(request);
    const firstCall = records.find((r) => name(r) === 'api_request')!;
    const answer = records.find((r) => name(r) === 'assistant_response')!;
    // As Claude Code logs it after an answer that says "Let me run it." and calls the tool.
    const midTurn: LogRecord = {
      ...answer,
      timeUnixNano: firstCall.timeUnixNano,
      observedTimeUnixNano: firstCall.observedTimeUnixNano,
      attributes: answer.attributes!.map((a) => {
        if (a.key === 'request_id') return { key: a.key, value: attr(firstCall, 'request_id') };
        if (a.key === 'response') return { key: a.key, value: { stringValue: 'Let me run it.' } };
        if (a.key === 'message.uuid') return { key: a.key, value: { stringValue: 'mid-turn' } };
        return a;
      }),
    };
    const withMid = [
      ...records.slice(0, records.indexOf(firstCall) + 1),
      midTurn,
      ...records.slice(records.indexOf(firstCall) + 1),
    ].map((r, i) => ({
      ...r,
      attributes: r.attributes!.map((a) =>
        a.key === 'event.sequence' ? { key: a.key, value: { intValue: String(i) } } : a,
      ),
    }));
    const h = harness();
    const result = withMid.find((r) => name(r) === 'tool_result')!;
    await h.process(
      requestOf(
        request,
        withMid.filter((r) => r !== result),
      ),
    );
    assert.equal(
      h.roots().length,
      0,
      'the answer that called the tool is no end; the tool_result before the last answer is missing',
    );
    await h.process(requestOf(request, [result]));
    const [root] = h.roots();
    assertWholeRoot([...h.stored().values()], root!, 'text and tool');
    assert.equal(root!.attrs['gen_ai.completion'], attr(answer, 'response')?.stringValue, "the turn's last answer");
  });

  test(`${label}: an event held back for minutes is waited for, and the root is the whole tree`, async () => {
    const request = logsOf('json', 'two-tools');
    const records = recordsOf(request);
    const held = records.find((r) => name(r) === 'tool_result')!;
    const h = harness();
    await h.process(
      requestOf(
        request,
        records.filter((r) => r !== held),
      ),
    );
    assert.equal(h.roots().length, 0, 'its end marker came, but a number before it is missing');
    assert.equal(await h.advance(DEFAULT_LIFECYCLE.gapWaitMs - MINUTE), 0);
    await h.process(requestOf(request, [held]));
    assert.equal(h.roots().length, 1, 'drawn as soon as the gap filled');
    assert.deepEqual(treeOf(h.stored().values()), await wholeTree(records, request));
  });

  test(`${label}: start-up events that arrive after their prompt's root was drawn are sent at once, in its trace`, async () => {
    const request = logsOf('json', 'simple');
    const records = recordsOf(request);
    const startUp = records.filter((r) => attr(r, 'prompt.id') === undefined);
    assert.ok(startUp.length > 0);
    const h = harness();
    await h.process(
      requestOf(
        request,
        records.filter((r) => !startUp.includes(r)),
      ),
    );
    assert.equal(await h.advance(DEFAULT_LIFECYCLE.gapWaitMs), 1, 'drawn incomplete: the start-up numbers never came');
    const [root] = h.roots();
    await h.process(requestOf(request, startUp));
    const late = [...h.stored().values()].filter((s) => s.attrs['prompt.id'] === undefined && s.parentSpanId);
    assert.equal(late.length, startUp.length, 'every one sent, none lost in Redis');
    assert.ok(late.every((s) => s.traceId === root!.traceId && s.parentSpanId === root!.spanId));
    assert.equal(h.exported.filter((s) => !s.parentSpanId).length, 1, 'never a second root');
  });

  test(`${label}: spans a batch holds for a turn while its root is being drawn (claimed, not yet settled) are sent, not marked sent unsent`, async () => {
    const request = logsOf('json', 'simple');
    const records = recordsOf(request);
    const startUp = records.filter((r) => attr(r, 'prompt.id') === undefined);
    assert.ok(startUp.length > 0);
    let raced = false;
    const h: Harness = harness({
      exportSpans: async (rs) => {
        const spans = rs.flatMap((r) => r.scopeSpans!.flatMap((ss) => ss.spans!));
        // Another worker's batch lands between this root's claim and its settle.
        if (!raced && spans.some((s) => !s.parentSpanId)) {
          raced = true;
          await other.process(requestOf(request, startUp));
        }
        for (const s of spans) h.exported.push({ ...s, attrs: attributesToRecord(s.attributes) });
      },
    });
    const other = sibling(h);
    await h.process(
      requestOf(
        request,
        records.filter((r) => !startUp.includes(r)),
      ),
    );
    assert.equal(await h.advance(DEFAULT_LIFECYCLE.gapWaitMs), 1, 'drawn once the gap wait ran out');
    assert.ok(raced, 'the batch came while the root was being drawn');
    const [root] = h.roots();
    const startUpSpans = [...h.stored().values()].filter((s) => s.attrs['prompt.id'] === undefined && s.parentSpanId);
    assert.equal(startUpSpans.length, startUp.length, 'every start-up span sent, none left marked sent in Redis');
    assert.ok(startUpSpans.every((s) => s.traceId === root!.traceId && s.parentSpanId === root!.spanId));
    assert.equal(h.exported.filter((s) => !s.parentSpanId).length, 1, 'one root');
    assert.equal(
      (await h.store.stats())['late_events'] ?? 0,
      0,
      'nothing counted late: it came before the root was settled',
    );
  });

  test(`${label}: a batch retried after its export failed is applied once: its late events counted once, the spans it released sent`, async () => {
    const request = logsOf('json', 'simple');
    const records = recordsOf(request);
    const startUp = records.filter((r) => attr(r, 'prompt.id') === undefined);
    const prompt = records.find((r) => name(r) === 'user_prompt')!;
    let failNext = false;
    const h: Harness = harness({
      exportSpans: async (rs) => {
        if (failNext) {
          failNext = false;
          throw new Error('LLMFlow is away');
        }
        for (const r of rs)
          for (const s of r.scopeSpans!.flatMap((ss) => ss.spans!))
            h.exported.push({ ...s, attrs: attributesToRecord(s.attributes) });
      },
    });
    await h.process(
      requestOf(
        request,
        records.filter((r) => !startUp.includes(r)),
      ),
    );
    assert.equal(await h.advance(DEFAULT_LIFECYCLE.gapWaitMs), 1, 'drawn once the gap wait ran out');
    const [root] = h.roots();
    // Start-up events (released into the drawn turn) and a copy of its prompt (late), in one batch.
    const late = requestOf(request, [...startUp, prompt]);
    failNext = true;
    await assert.rejects(h.process(late, 'job-7@1'), /LLMFlow is away/);
    await h.process(late, 'job-7@1');
    const startUpSpans = [...h.stored().values()].filter((s) => s.attrs['prompt.id'] === undefined && s.parentSpanId);
    assert.equal(startUpSpans.length, startUp.length, 'the released spans went on the retry');
    assert.ok(startUpSpans.every((s) => s.traceId === root!.traceId));
    assert.equal((await h.store.stats())['late_events'], 1, 'the late event counted once');
  });

  test(`${label}: a gap that never fills: drawn with complete=false and the count missing once the wait is over; the event, late, joins the trace`, async () => {
    const request = logsOf('json', 'two-tools');
    const records = recordsOf(request);
    const held = records.filter((r) => name(r) === 'tool_result');
    const h = harness();
    await h.process(
      requestOf(
        request,
        records.filter((r) => !held.includes(r)),
      ),
    );
    assert.equal(await h.advance(DEFAULT_LIFECYCLE.gapWaitMs - 1), 0);
    assert.equal(await h.advance(1), 1);
    const [root] = h.roots();
    assert.equal(root!.attrs['claude_code.interaction.complete'], false);
    assert.equal(root!.attrs['claude_code.interaction.missing_events'], held.length);
    assert.equal(root!.attrs['claude_code.interaction.end'], 'gap_timeout');
    const summary = await h.process(requestOf(request, held));
    assert.equal(summary.late, held.length);
    assert.equal(h.exported.filter((s) => !s.parentSpanId).length, 1, 'never a second root');
    const spans = [...h.stored().values()];
    assert.equal(new Set(spans.map((s) => s.traceId)).size, 1);
    assert.equal(spans.filter((s) => s.name === 'claude_code.tool').length, held.length);
    const stats = await h.store.stats();
    assert.equal(stats.late_events, held.length);
    assert.equal(stats.drawn_incomplete, 1);
  });

  test(`${label}: a turn that never ends (Claude Code killed) is drawn with complete=false after the turn timeout, not before`, async () => {
    const request = logsOf('json', 'tool');
    const records = recordsOf(request).filter((r) => name(r) !== 'assistant_response');
    const h = harness();
    await h.process(requestOf(request, records));
    assert.equal(await h.advance(DEFAULT_LIFECYCLE.turnTimeoutMs - 1), 0);
    assert.equal(await h.advance(1), 1);
    const [root] = h.roots();
    assert.equal(root!.attrs['claude_code.interaction.complete'], false);
    assert.equal(root!.attrs['claude_code.interaction.end'], 'turn_timeout');
  });

  test(`${label}: a timers' round runs a shard's script only where something is due: none while a turn waits, one in its shard once its timeout runs out`, async () => {
    const request = logsOf('json', 'tool');
    const records = recordsOf(request).filter((r) => name(r) !== 'assistant_response');
    const h = harness();
    const scripts: number[] = [];
    const due = h.store.due.bind(h.store);
    h.store.due = (shard, input) => (scripts.push(shard), due(shard, input));
    assert.equal(await h.tick(), 0);
    await h.process(requestOf(request, records));
    assert.equal(await h.advance(DEFAULT_LIFECYCLE.turnTimeoutMs - 1), 0);
    assert.deepEqual(scripts, [], 'no shard had anything due');
    assert.equal(await h.advance(1), 1);
    const session = attr(records[0]!, 'session.id')!.stringValue!;
    assert.deepEqual(scripts, [shardOf(session)], "the turn's shard, once");
    assert.equal(await h.tick(), 0);
    assert.equal(scripts.length, 1, 'nothing due once the root is drawn');
  });

  test(`${label}: a tool whose tool_result never comes (Claude Code killed while it ran): its span drawn unfinished with the timed-out root, so its blocked_on_user keeps its parent`, async () => {
    const request = logsOf('json', 'tool');
    const records = recordsOf(request).filter((r) => !['assistant_response', 'tool_result'].includes(name(r) ?? ''));
    const h = harness();
    await h.process(requestOf(request, records));
    assert.equal(await h.advance(DEFAULT_LIFECYCLE.turnTimeoutMs), 1);
    const spans = [...h.stored().values()];
    const blocked = spans.find((s) => s.name === 'claude_code.tool.blocked_on_user');
    const tool = spans.find((s) => s.name === 'claude_code.tool');
    assert.ok(blocked && tool, 'the blocked_on_user span and its tool span');
    assert.equal(blocked.parentSpanId, tool.spanId);
    assert.equal(tool.attrs['claude_code.tool.unfinished'], true);
    assert.equal(tool.status?.code, 2);
  });

  test(`${label}: a timer does not run out while batches received before it still wait in the queue`, async () => {
    let backlogSince: number | undefined;
    const h = harness({ backlogSinceMs: async () => backlogSince });
    const request = logsOf('json', 'tool');
    await h.process(
      requestOf(
        request,
        recordsOf(request).filter((r) => name(r) !== 'assistant_response'),
      ),
    );
    backlogSince = h.clock.now() + 1;
    assert.equal(
      await h.advance(DEFAULT_LIFECYCLE.turnTimeoutMs + MINUTE),
      0,
      'a batch from before it ran out is still queued',
    );
    backlogSince = undefined;
    assert.equal(await h.advance(DEFAULT_LIFECYCLE.recheckMs), 1);
  });

  test(`${label}: an interrupted turn ends at the session's next prompt in the same process, complete when nothing between is missing`, async () => {
    const request = logsOf('json', 'tool');
    const prompted = recordsOf(request).filter((r) => attr(r, 'prompt.id'));
    const first = variant(
      prompted.filter((r) => name(r) !== 'assistant_response'),
      { tag: 'one', seqFrom: 0 },
    );
    const second = variant(prompted, { tag: 'two', seqFrom: first.length, shiftMs: MINUTE });
    const h = harness();
    await h.process(requestOf(request, first));
    assert.equal(h.roots().length, 0);
    await h.process(requestOf(request, second));
    const roots = h.roots();
    assert.equal(roots.length, 2);
    const ends = roots.map((r) => r.attrs['claude_code.interaction.end']).sort();
    assert.deepEqual(ends, ['next_prompt', 'response']);
    for (const r of roots)
      assertWholeRoot(
        [...h.stored().values()],
        r,
        r.attrs['claude_code.interaction.end'] as string,
        r.attrs['claude_code.interaction.end'] === 'response',
      );
  });

  test(`${label}: a killed process's turn that had answered mid-turn waits for the batches queued before a newer process's prompt came`, async () => {
    const request = logsOf('json', 'tool');
    const records = recordsOf(request);
    const final = records.find((r) => name(r) === 'assistant_response')!;
    const calledTool = attr(
      records.find((r) => name(r) === 'tool_decision')!,
      'request_id',
    )!;
    // An answer with text that also called the tool: an end candidate, but no end (lifecycle.lua).
    const midTurn: LogRecord = {
      ...final,
      attributes: final.attributes!.map((a) => (a.key === 'request_id' ? { key: a.key, value: calledTool } : a)),
    };
    const killed = variant(
      records.map((r) => (r === final ? midTurn : r)),
      { tag: 'killed-mid' },
    );
    const resumed = variant(records, { tag: 'resumed-mid', shiftMs: MINUTE });
    let backlogSince: number | undefined;
    const h = harness({ backlogSinceMs: async () => backlogSince });
    await h.process(requestOf(request, killed));
    h.clock.advance(2 * DEFAULT_LIFECYCLE.processWaitMs); // its answer was seen long before the newer process's prompt
    await h.process(requestOf(request, resumed));
    backlogSince = h.clock.now(); // batches received since then still wait in the queue
    assert.equal(await h.advance(DEFAULT_LIFECYCLE.processWaitMs + 1), 0, 'the killed turn waits for them');
    backlogSince = undefined;
    assert.equal(await h.advance(DEFAULT_LIFECYCLE.recheckMs), 1, 'then it is drawn');
    assert.equal(h.roots().length, 2);
  });

  test(`${label}: a resumed session (same session.id, event.sequence from 0 again) is a second interaction; a turn its start cut off is drawn incomplete`, async () => {
    const request = logsOf('json', 'tool');
    const records = recordsOf(request);
    const killed = variant(
      records.filter((r) => name(r) !== 'assistant_response'),
      { tag: 'killed' },
    );
    const resumed = variant(records, { tag: 'resumed', shiftMs: MINUTE });
    const h = harness();
    await h.process(requestOf(request, killed));
    await h.process(requestOf(request, resumed));
    // The killed process's own last events could still be on their way: its turn waits a moment.
    assert.equal(h.roots().length, 1, 'the resumed turn is drawn; the killed one waits');
    assert.equal(await h.advance(DEFAULT_LIFECYCLE.processWaitMs - 1), 0);
    await h.advance(1);
    const roots = h.roots();
    assert.equal(roots.length, 2);
    assert.equal(new Set(roots.map((r) => r.traceId)).size, 2);
    const byEnd = new Map(roots.map((r) => [r.attrs['claude_code.interaction.end'], r]));
    assert.equal(byEnd.get('new_process')?.attrs['claude_code.interaction.complete'], false);
    assertWholeRoot([...h.stored().values()], byEnd.get('response')!, 'resumed');
  });

  /**
   * A turn with a subagent the turn's calls cannot have started (its only call is Bash): it made
   * a request and finished, before the turn's answer; then a second turn. Numbered in record
   * order, so nothing is missing. With `session`, as that session.
   */
  function unplaceableSubagent(tag: string, session?: string) {
    const request = logsOf('json', 'tool');
    const prompted = recordsOf(request).filter((r) => attr(r, 'prompt.id'));
    const api = prompted.find((r) => name(r) === 'api_request')!;
    const sub = (event: string, extra: LogRecord['attributes']): LogRecord => ({
      ...api,
      body: { stringValue: `claude_code.${event}` },
      attributes: [
        ...api.attributes!.filter((a) => !['event.name', 'request_id'].includes(a.key)),
        { key: 'event.name', value: { stringValue: event } },
        { key: 'agent_id', value: { stringValue: 'agent-A' } },
        { key: 'agent_type', value: { stringValue: 'general-purpose' } },
        ...extra!,
      ],
    });
    const answer = prompted.findIndex((r) => name(r) === 'assistant_response');
    const first = variant(
      [
        ...prompted.slice(0, answer),
        sub('api_request', [{ key: 'request_id', value: { stringValue: 'req-sub' } }]),
        sub('subagent_completed', []),
        ...prompted.slice(answer),
      ],
      { tag: `${tag}-one`, seqFrom: 0, session },
    );
    const second = variant(prompted, { tag: `${tag}-two`, seqFrom: first.length, shiftMs: MINUTE, session });
    const key = promptKeyOf(attr(first[answer]!, 'prompt.id')!.stringValue!);
    return { request, first, second, key, session: session ?? attr(first[0]!, 'session.id')!.stringValue! };
  }

  /** Asserts the subagent's spans went under its prompt's root, by rule `root`. */
  function assertUnderRoot(h: Harness, t: ReturnType<typeof unplaceableSubagent>) {
    const root = h.roots().find((r) => r.spanId === rootSpanIdFor(t.key));
    assert.ok(root, `${t.session}: the subagent's prompt has its root`);
    const spans = [...h.stored().values()].filter(
      (s) => s.attrs['gen_ai.agent.id'] === 'agent-A' && s.traceId === root.traceId,
    );
    assert.deepEqual(spans.map((s) => s.name).sort(), ['claude_code.llm_request', 'claude_code.subagent_completed']);
    for (const s of spans) {
      assert.equal(s.parentSpanId, root.spanId, `${s.name} under the root`);
      assert.equal(s.attrs['claude_code.agent.placement'], 'root');
    }
  }

  test(`${label}: a finished subagent no Agent call can be told for goes under its prompt's root once a later prompt came (rule root)`, async () => {
    const t = unplaceableSubagent('solo');
    const h = harness();
    await h.process(requestOf(t.request, t.first));
    const ofAgent = () => [...h.stored().values()].filter((s) => s.attrs['gen_ai.agent.id'] === 'agent-A');
    assert.deepEqual(ofAgent(), [], 'held while a notification could still name its call');
    await h.process(requestOf(t.request, t.second));
    assertUnderRoot(h, t);
  });

  test(`${label}: a placed subagent's spans go to one batch at a time (a lease): a batch racing it sends none of them, and when no commit comes the timers' round sends them once the lease runs out`, async () => {
    const ofAgent = <T extends { attributes?: { key: string; value?: { stringValue?: string } }[] }>(spans: T[]) =>
      spans.filter((s) => s.attributes?.some((a) => a.key === 'gen_ai.agent.id' && a.value?.stringValue === 'agent-A'));
    let gate: Promise<void> | undefined;
    let entered: () => void = () => {};
    let failing = false;
    const sent: string[] = [];
    const h = harness({
      exportSpans: async (rs) => {
        const spans = rs.flatMap((r) => r.scopeSpans!.flatMap((ss) => ss.spans!));
        if (ofAgent(spans).length > 0) {
          entered();
          await gate;
          if (failing) throw new Error('LLMFlow refused the export');
        }
        for (const span of spans) h.exported.push({ ...span, attrs: attributesToRecord(span.attributes) });
        sent.push(...ofAgent(spans).map((x) => x.spanId));
      },
    });
    // Two deliveries of the batch that places the subagent, the first held in its export.
    const race = unplaceableSubagent('lease-race', 'lease-race-session');
    await h.process(requestOf(race.request, race.first), 'first');
    let open!: () => void;
    gate = new Promise((resolve) => (open = resolve));
    const inExport = new Promise<void>((resolve) => (entered = resolve));
    const one = h.process(requestOf(race.request, race.second), 'second-a');
    await inExport;
    entered = () => assert.fail('the racing batch was handed the leased spans');
    await sibling(h).process(requestOf(race.request, race.second), 'second-b');
    open();
    await one;
    assertUnderRoot(h, race);
    assert.equal(sent.length, new Set(sent).size, 'each subagent span sent once');
    assert.equal(sent.length, 2);

    // A batch whose export failed and that is not retried: its lease runs out, then the timers send.
    entered = () => {};
    gate = undefined;
    const lost = unplaceableSubagent('lease-lost', 'lease-lost-session');
    await h.process(requestOf(lost.request, lost.first), 'lost-first');
    failing = true;
    await assert.rejects(h.process(requestOf(lost.request, lost.second), 'lost-second'), /refused/);
    failing = false;
    const before = sent.length;
    await h.advance(DEFAULT_LIFECYCLE.leaseMs - 1);
    assert.equal(sent.length, before, 'leased until then');
    await h.advance(1);
    assertUnderRoot(h, lost);
    assert.equal(sent.length, before + 2);
  });

  test(`${label}: subagents of sessions in every shard placed by one batch (on a cluster: over every master)`, async () => {
    const bySession = new Map<number, string>();
    for (let i = 0; bySession.size < SHARDS; i++) bySession.set(shardOf(`many-${i}`), `many-${i}`);
    const turns = [...bySession.values()].map((session, i) => unplaceableSubagent(`m${i}`, session));
    const h = harness();
    await h.process(
      requestOf(
        turns[0]!.request,
        turns.flatMap((t) => t.first),
      ),
    );
    await h.process(
      requestOf(
        turns[0]!.request,
        turns.flatMap((t) => t.second),
      ),
    );
    for (const t of turns) assertUnderRoot(h, t);
  });

  test(`${label}: two whole turns of a session in two processes each draw their own complete root`, async () => {
    const request = logsOf('json', 'tool');
    const h = harness();
    await h.process(requestOf(request, variant(recordsOf(request), { tag: 'a' })));
    await h.process(requestOf(request, variant(recordsOf(request), { tag: 'b', shiftMs: MINUTE })));
    const roots = h.roots();
    assert.equal(roots.length, 2);
    for (const r of roots) assertWholeRoot([...h.stored().values()], r, 'process');
  });

  test(`${label}: events without prompt.id (older Claude Code) keep the idle rule: grouped by session and time, drawn once quiet`, async () => {
    const request = logsOf('json', 'tool');
    const one = variant(recordsOf(request), { tag: 'a', promptId: false });
    const two = variant(recordsOf(request), { tag: 'b', shiftMs: MINUTE, promptId: false });
    const h = harness();
    await h.process(requestOf(request, [...two, ...one]));
    for (const r of [...one, ...two].reverse()) await h.process(requestOf(request, [r]));
    assert.deepEqual(
      h.roots().map((r) => r.attrs['claude_code.interaction.end']),
      ['new_process'],
      "the first prompt ended at the session's next one",
    );
    assert.equal(await h.advance(DEFAULT_LIFECYCLE.idleMs - 1), 0);
    assert.equal(await h.advance(1), 1);
    const spans = [...h.stored().values()];
    const roots = h.roots();
    assert.equal(roots.length, 2, 'one root per prompt');
    for (const root of roots) {
      assert.equal(root.attrs['claude_code.interaction.complete'], undefined, 'no evidence to tell by');
      const children = spans.filter((s) => s.traceId === root.traceId && s.parentSpanId);
      assert.equal(children.filter((s) => s.name === 'claude_code.llm_request').length, 2);
      assert.equal(children.filter((s) => s.name === 'claude_code.tool').length, 1);
      assert.ok(children.every((c) => BigInt(c.endTimeUnixNano) <= BigInt(root.endTimeUnixNano)));
    }
  });

  test(`${label}: many sessions interleaved in one batch give each its own tree`, async () => {
    const sessions = SCENARIOS.map((s) => recordsOf(logsOf('json', s)));
    const mixed = shuffle(sessions.flat(), prng(42));
    assert.notDeepEqual(mixed, sessions.flat(), 'the shuffle changed the order');
    const h = harness();
    await h.process(requestOf(logsOf('json', 'simple'), mixed));
    const apart: Record<string, unknown> = {};
    for (const records of sessions) Object.assign(apart, await wholeTree(records));
    assert.deepEqual(treeOf(h.stored().values()), apart);
  });

  test(`${label}: many sessions delivered out of order, some batches minutes late, by two workers: every root complete, each the whole tree`, async () => {
    const random = prng(2026);
    const template = logsOf('json', 'simple');
    const sessions = Array.from({ length: 24 }, (_, i) => {
      const scenario: Scenario = SCENARIOS[i % SCENARIOS.length]!;
      return variant(recordsOf(logsOf('json', scenario)), {
        tag: `s${i}`,
        session: `session-${i}`,
        shiftMs: i * 1_000,
      });
    });
    const h = harness();
    const other = sibling(h);
    const batches = deliveries(sessions.flat(), random);
    const [now, later] = [batches.filter(() => random() >= 0.2), [] as LogRecord[][]];
    for (const b of batches) if (!now.includes(b)) later.push(b);
    assert.ok(later.length > 0);
    const run = async (list: LogRecord[][]) => {
      await Promise.all([
        (async () => {
          for (const b of list.filter((_, i) => i % 2 === 0)) await h.process(requestOf(template, b));
        })(),
        (async () => {
          for (const b of list.filter((_, i) => i % 2 === 1)) await other.process(requestOf(template, b));
        })(),
      ]);
    };
    await run(now);
    // The rest comes minutes later (a Collector retrying), with timer rounds meanwhile.
    for (let m = 0; m < 5; m++) await h.advance(MINUTE);
    await run(later);
    const apart: Record<string, unknown> = {};
    for (const records of sessions) Object.assign(apart, await wholeTree(records, template));
    assert.deepEqual(treeOf(h.stored().values()), apart);
    assert.equal(h.roots().length, sessions.length);
    assert.equal(h.exported.filter((s) => !s.parentSpanId).length, sessions.length, 'each root sent once');
  });

  test(`${label}: session-level events that come before any prompt are held, then land on the first prompt`, async () => {
    const request = logsOf('protobuf', 'simple');
    const records = recordsOf(request);
    const startup = records.filter((r) => !attr(r, 'prompt.id'));
    assert.ok(startup.length > 0);
    const h = harness();
    await h.process(requestOf(request, startup));
    assert.equal(h.exported.length, 0);
    await h.process(
      requestOf(
        request,
        records.filter((r) => !startup.includes(r)),
      ),
    );
    const root = h.roots()[0]!;
    const whole = await wholeTree(records, request);
    assert.deepEqual(treeOf([root]), { [root.spanId]: whole[root.spanId] });
  });

  test(`${label}: the first prompt's root waits for its process's start-up events too`, async () => {
    const request = logsOf('protobuf', 'simple');
    const records = recordsOf(request);
    const startup = records.filter((r) => !attr(r, 'prompt.id'));
    const h = harness();
    await h.process(
      requestOf(
        request,
        records.filter((r) => !startup.includes(r)),
      ),
    );
    assert.equal(h.roots().length, 0, 'numbers 0.. before the prompt are missing');
    await h.process(requestOf(request, startup));
    assert.deepEqual(treeOf(h.stored().values()), await wholeTree(records, request));
  });

  test(`${label}: an API error is an LLM span with error status, status code and attempt`, async () => {
    const request = logsOf('json', 'simple');
    const records = recordsOf(request);
    const api = records.find((r) => name(r) === 'api_request')!;
    const error: LogRecord = {
      ...api,
      body: { stringValue: 'claude_code.api_error' },
      attributes: [
        ...api.attributes!.filter((a) => ['session.id', 'prompt.id', 'user.id', 'model'].includes(a.key)),
        { key: 'event.name', value: { stringValue: 'api_error' } },
        { key: 'error', value: { stringValue: 'Overloaded' } },
        { key: 'status_code', value: { stringValue: '529' } },
        { key: 'attempt', value: { intValue: '1' } },
        { key: 'duration_ms', value: { intValue: '12' } },
      ],
    };
    // Numbered after the prompt, before the answer: the answer and everything after move up one.
    const seq = (r: LogRecord) => Number(attr(r, 'event.sequence')?.intValue);
    const at = seq(api);
    const renumbered = records.map((r) =>
      seq(r) < at
        ? r
        : {
            ...r,
            attributes: r.attributes!.map((a) =>
              a.key === 'event.sequence' ? { key: a.key, value: { intValue: String(seq(r) + 1) } } : a,
            ),
          },
    );
    error.attributes!.push({ key: 'event.sequence', value: { intValue: String(at) } });
    const h = harness();
    await h.process(requestOf(request, [...renumbered, error]));
    const spans = [...h.stored().values()];
    const failed = spans.find((s) => s.status?.code === StatusCode.ERROR)!;
    assert.equal(failed.name, 'claude_code.llm_request');
    assert.equal(failed.status?.message, 'Overloaded');
    assert.equal(failed.attrs['http.response.status_code'], 529);
    assert.equal(failed.attrs['attempt'], 1);
    const root = h.roots()[0]!;
    assert.equal(root.attrs['claude_code.interaction.errors'], 1);
    assert.equal(root.attrs['claude_code.interaction.llm_requests'], 2);
    assert.equal(root.attrs['claude_code.interaction.complete'], true);
  });
}
