/**
 * The sessions' ledger (packages/sessions) against a real Redis: each api_request event and
 * each metrics job counts once however often it comes; a session is compared once quiet, and a
 * difference is reported once; news during a comparison has it compared again; the verdict says
 * which side is short; the news the batch scripts leave (events as a batch is applied, roots as they are
 * committed) is taken in once, before a comparison.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '@ccbridge/log';
import {
  LedgerStore,
  Reconciler,
  eventContributions,
  findingSpan,
  verdictOf,
  type EventContribution,
} from '@ccbridge/sessions';
import type { ExportLogsRequest } from '@ccbridge/otlp';
import { LifecycleStore } from '@ccbridge/claude-events';
import { useRedis } from '../support/per-file';

const peers = useRedis();

const event = (session: string, n: number, tokens: number): EventContribution => ({
  session,
  id: `e${n}`,
  key: `prompt/p${n}`,
  t: `${1_795_000_000_000_000_000n + BigInt(n) * 1_000_000_000n}`,
  sums: { 'm|input': tokens, 'm|cost': tokens / 1024 },
});
const counter = (session: string, n: number, tokens: number) => ({
  session,
  t: `${1_795_000_000_000_000_000n + BigInt(n) * 1_000_000_000n}`,
  sums: { 'm|input': tokens, 'm|cost': tokens / 1024 },
});

test('each event and each metrics job counts once; a quiet session is compared, and its difference reported once', async () => {
  const store = new LedgerStore(peers.client);
  const t0 = 1_000_000;
  assert.equal(await store.addEvents([event('s1', 1, 100), event('s1', 2, 50)], t0), 2);
  assert.equal(await store.addEvents([event('s1', 1, 100)], t0), 0, 'an event sent again counts once');
  assert.equal(await store.addCounters('job-1', [counter('s1', 2, 150), counter('s1', 3, 70)], t0), true);
  assert.equal(
    await store.addCounters('job-1', [counter('s1', 2, 150), counter('s1', 3, 70)], t0),
    false,
    'a job run again counts once',
  );

  assert.deepEqual(await store.check(t0 - 1, t0, 60_000), [], 'not quiet long enough');
  const [c, ...more] = await store.check(t0, t0, 60_000);
  assert.equal(more.length, 0);
  assert.deepEqual(c!.diffs, { 'm|input': 70, 'm|cost': 70 / 1024 });
  assert.equal(c!.latestKey, 'prompt/p2', 'the latest turn the events brought');
  assert.equal(verdictOf(c!.diffs), 'events_missing');
  assert.deepEqual(await store.check(t0 + 1, t0 + 1, 60_000), [], 'leased meanwhile');
  await store.settle(c!, 'events_missing');
  assert.deepEqual(await store.check(t0 + 120_000, t0 + 120_000, 60_000), [], 'compared, and nothing new');
  const [listed] = await store.sessions();
  assert.equal(listed!.verdict, 'events_missing');
  assert.deepEqual(listed!.unaccounted, { 'm|input': 70, 'm|cost': 70 / 1024 });

  // The lost events arrive after all: now the events are 70 over what was left unaccounted.
  await store.addEvents([event('s1', 3, 70)], t0 + 200_000);
  const [late] = await store.check(t0 + 200_000, t0 + 200_000, 60_000);
  assert.deepEqual(late!.diffs, { 'm|input': -70, 'm|cost': -70 / 1024 });
  // News while a worker holds it: it stays due, and is compared again.
  await store.addCounters('job-2', [counter('s1', 4, 5)], t0 + 210_000);
  await store.settle(late!, verdictOf(late!.diffs));
  const [again] = await store.check(t0 + 300_000, t0 + 300_000, 60_000);
  assert.deepEqual(again!.diffs, { 'm|input': 5, 'm|cost': 5 / 1024 });
});

test('the news batches leave as they are applied and committed is taken in before a comparison, each event and root once', async () => {
  await peers.client.flushall();
  const lifecycle = new LifecycleStore(peers.client);
  const store = new LedgerStore(peers.client);
  const work = {
    updates: [],
    sequences: [],
    pending: [],
    sessions: [],
    news: [event('s5', 1, 10), event('s5', 2, 15)],
  };
  const [applied] = await lifecycle.batch(work, 'job-1');
  await lifecycle.batch(work, 'job-1');
  await lifecycle.batch({ ...work, news: [event('s5', 2, 15)] }, 'job-2');
  const root = { session: 's5', traceId: 't1', verdict: { complete: true } };
  await lifecycle.commit(applied!.shard, { batch: 'job-1', roots: [root] });
  assert.equal(await store.newsWaiting(), 3, 'a batch delivered again leaves its news once');
  const t0 = 7_000_000;
  await store.addCounters('job-s5', [counter('s5', 1, 25)], t0);
  let now = t0 + 10_000;
  const sent: unknown[] = [];
  const reconciler = new Reconciler({
    store,
    log: createLogger('silent'),
    settleMs: 5_000,
    now: () => now,
    exportSpans: async (spans) => void sent.push(...spans),
  });
  // Compared before its events were taken in, the session would be reported as missing them.
  assert.equal(await reconciler.compareDue(), 0);
  assert.equal(await store.newsWaiting(), 0);
  now += 10_000;
  assert.equal(await reconciler.compareDue(), 0, 'the events, taken in, agree with the counters');
  assert.equal(sent.length, 0);
  const [s5] = await store.sessions();
  assert.deepEqual(s5!.events, { 'm|input': 25, 'm|cost': 25 / 1024 }, 'an event in two batches counts once');
  assert.deepEqual(s5!.turns, { drawn: 1, complete: 1, incomplete: 0 });
  assert.equal(s5!.verdict, 'ok');
  assert.equal(await store.drain(), true, 'nothing left');
});

test('two sides that agree are settled as ok; events without counters are reported as such', async () => {
  const store = new LedgerStore(peers.client);
  const t0 = 5_000_000;
  await store.addEvents([event('s2', 1, 10)], t0);
  await store.addCounters('job-s2', [counter('s2', 1, 10)], t0);
  await store.addEvents([event('s3', 1, 10)], t0);
  const found = await store.check(t0, t0, 60_000);
  const bySession = Object.fromEntries(found.map((c) => [c.session, c]));
  assert.deepEqual(bySession.s2!.diffs, {});
  assert.equal(verdictOf(bySession.s3!.diffs), 'counters_missing');
  const span = findingSpan(bySession.s3!, 'counters_missing').scopeSpans![0]!.spans![0]!;
  assert.equal(span.name, 'claude_code.session.unaccounted');
  assert.equal(span.status!.code, 2);
  assert.deepEqual(span.attributes!.find((a) => a.key === 'claude_code.unaccounted.input_tokens')!.value, {
    intValue: '-10',
  });
  assert.equal(verdictOf({ a: 1, b: -1 }), 'mismatch');
});

test('api_request events of a logs batch are read with their session, turn, tokens and cost', () => {
  const kv = (key: string, v: string | number) => ({
    key,
    value: typeof v === 'number' ? { doubleValue: v } : { stringValue: v },
  });
  const request: ExportLogsRequest = {
    resourceLogs: [
      {
        scopeLogs: [
          {
            logRecords: [
              {
                timeUnixNano: '1795000000000000000',
                body: { stringValue: 'claude_code.api_request' },
                attributes: [
                  kv('event.name', 'api_request'),
                  kv('session.id', 's'),
                  kv('prompt.id', 'p'),
                  kv('model', 'm'),
                  kv('input_tokens', 3),
                  kv('output_tokens', 4),
                  kv('cache_read_tokens', 5),
                  kv('cache_creation_tokens', 6),
                  kv('cost_usd', 0.5),
                ],
              },
              {
                timeUnixNano: '1795000000000000001',
                body: { stringValue: 'claude_code.tool_result' },
                attributes: [kv('session.id', 's')],
              },
            ],
          },
        ],
      },
    ],
  };
  const [e, ...rest] = eventContributions(request);
  assert.equal(rest.length, 0, 'only api_request events');
  assert.deepEqual(
    { ...e, id: undefined },
    {
      session: 's',
      id: undefined,
      key: 'prompt/p',
      t: '1795000000000000000',
      sums: { 'm|input': 3, 'm|output': 4, 'm|cacheRead': 5, 'm|cacheCreation': 6, 'm|cost': 0.5 },
    },
  );
});

test('the reconciler waits for the batches still queued, reports a finding as a span and a warn line, and once', async () => {
  const store = new LedgerStore(peers.client);
  await peers.client.flushall();
  const t0 = 9_000_000;
  await store.addEvents([event('s4', 1, 10)], t0);
  await store.addCounters('job-s4', [counter('s4', 1, 25)], t0);
  const sent: string[] = [];
  const lines: string[] = [];
  const log = createLogger('info', { write: (line: string) => lines.push((JSON.parse(line) as { msg: string }).msg) });
  let backlog: number | undefined = t0 - 1;
  let now = t0 + 10_000;
  const reconciler = new Reconciler({
    store,
    log,
    settleMs: 5_000,
    now: () => now,
    backlogSinceMs: async () => backlog,
    exportSpans: async (spans) => {
      sent.push(...spans.flatMap((rs) => rs.scopeSpans!.flatMap((ss) => ss.spans!.map((x) => x.name))));
    },
  });
  assert.equal(await reconciler.compareDue(), 0, 'a batch received before the session went quiet still waits: not yet');
  backlog = undefined;
  assert.equal(await reconciler.compareDue(), 1);
  assert.deepEqual(sent, ['claude_code.session.unaccounted']);
  assert.equal(lines.filter((l) => /events never arrived/.test(l)).length, 1);
  now += 120_000;
  assert.equal(await reconciler.compareDue(), 0, 'not reported again');
  assert.equal(sent.length, 1);
});
