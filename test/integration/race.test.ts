/**
 * The race (issue 23, "Done when" 1): real Claude Code sessions (test/fixtures/sessions-2.1.328,
 * captured by test/support/capture-sessions.ts: foreground, background and parallel subagents,
 * hooks, many prompts in one process, a session resumed over eight processes, one over four
 * whose second process was killed mid-turn), each copied
 * several times with fresh ids, go through the bridge the way a team's telemetry does: records
 * interleaved across sessions, cut into batches of random size, a tenth posted twice, by several
 * posters at once, to an ingest feeding two worker processes at the default concurrency, over a
 * real Redis (and a 3-master Redis Cluster), into a real LLMFlow.
 *
 * The reference: the same session processed ALONE, one batch per captured request in captured
 * order, by one worker at concurrency 1. For every copy, its trees in LLMFlow (span names,
 * nesting, tool and hook names, counts, roots' completeness; ids left out) must equal the
 * reference's, with no orphans, and its ledger (packages/sessions) must count its api_request
 * events once and its turns as the reference's.
 *
 * Randomness: one seeded generator per variant (sfc32; shuffles are Fisher-Yates), seeded from the
 * run's seed mixed with the variant's name; the run's seed is printed, RACE_SEED=<it> repeats the run.
 * RACE_COPIES (6), RACE_SETTLE_MS (30 s: how long the trees may take to converge once every
 * batch is processed), RACE_REPORT_DIR (where the full diffs are written; the OS temp dir).
 * RACE_BRIDGE_ROOT: another built checkout whose bridge runs the reference and the variants (the
 * bench's baseline, test/bench/baseline.sh, to see the race fail on the code before issue 23).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Cluster, Redis } from 'ioredis';
import { shardKeys, shardOf } from '@ccbridge/redis';
import {
  fileTimeLimit,
  startBridge,
  startLlmflow,
  startRedis,
  waitFor,
  type BridgePeer,
  type LlmflowPeer,
} from '../support/peers';
import { startRedisCluster } from '../support/redis-cluster';
import {
  Rng,
  copySession,
  cut,
  diffShapes,
  drained,
  expectedLedger,
  ledgersOf,
  failureReasons,
  itemsOf,
  loadSessions,
  mergeInOrder,
  postBatches,
  processAlone,
  queueState,
  readRows,
  roundSums,
  sameShape,
  seedFor,
  shapesBySession,
  withDuplicates,
  type Batch,
  type Client,
  type Reference,
  type SessionCopy,
  type Shape,
} from '../support/race';

fileTimeLimit(45 * 60_000);

const SESSIONS = loadSessions();
const COPIES = Number(process.env.RACE_COPIES ?? 6);
const SETTLE_MS = Number(process.env.RACE_SETTLE_MS ?? 30_000);
const REPORT_DIR = process.env.RACE_REPORT_DIR ?? os.tmpdir();
/** How long the reference may take to settle once its batches are processed. */
const REFERENCE_MS = Number(process.env.RACE_REFERENCE_MS ?? 60_000);
const BRIDGE = { root: process.env.RACE_BRIDGE_ROOT };

let llmflow: LlmflowPeer;

const references = new Map<string, Reference>();

/**
 * Waits until `sessions`' shapes have not changed for `quietMs` (and satisfy `done`, when given:
 * then at once), at most `timeoutMs`; resolves with the last shapes whatever happened.
 */
async function settle(
  sessions: string[],
  timeoutMs: number,
  done: (shapes: Map<string, Shape>) => boolean,
  quietMs = 2_000,
): Promise<{ shapes: Map<string, Shape>; settled: boolean }> {
  let last = '';
  let since = Date.now();
  let shapes = new Map<string, Shape>();
  try {
    await waitFor(
      'the trees to settle',
      async () => {
        shapes = shapesBySession(await readRows(llmflow), sessions);
        if (done(shapes)) return true;
        const text = JSON.stringify([...shapes]);
        if (text !== last) [last, since] = [text, Date.now()];
        return false;
      },
      timeoutMs,
      500,
    );
    return { shapes, settled: true };
  } catch (err) {
    if (!/timed out/.test(String(err))) throw err;
    return { shapes, settled: Date.now() - since >= quietMs };
  }
}

before(async () => {
  llmflow = await startLlmflow();
  for (const [scenario, reference] of await processAlone(llmflow, SESSIONS, REFERENCE_MS, BRIDGE.root))
    references.set(scenario, reference);
});

after(async () => {
  await llmflow?.stop();
});

interface Variant {
  name: string;
  /** How the records are ordered and cut: all shuffled; each copy in order and cut anywhere; each captured request a batch. */
  order: 'shuffled' | 'in-order' | 'as-captured';
  duplicates: boolean;
  /** Worker processes, and their BRIDGE_WORKER_CONCURRENCY (unset: the default). */
  workers: number;
  concurrency?: number;
  posters: number;
  cluster?: boolean;
  copies?: number;
  scenarios?: string[];
  maxBatch?: number;
}

/** The masters of a cluster by slot range, and the slot of a key (CLUSTER SLOTS, CLUSTER KEYSLOT). */
async function clusterMap(client: Cluster): Promise<(session: string) => Promise<string>> {
  const node = client.nodes('master')[0]!;
  const slots = (await node.call('CLUSTER', 'SLOTS')) as [number, number, [string, number, string]][];
  return async (session) => {
    const tag = shardKeys(shardOf(session)).deadlines;
    const slot = Number(await node.call('CLUSTER', 'KEYSLOT', tag));
    const range = slots.find(([lo, hi]) => slot >= lo && slot <= hi)!;
    return `${range[2][0]}:${range[2][1]}`;
  };
}

async function runVariant(v: Variant): Promise<void> {
  const { seed, base } = seedFor(v.name);
  const rng = new Rng(seed);
  const repeat = `seed ${seed} (RACE_SEED=${base} repeats this run)`;
  process.stderr.write(`race ${v.name}: ${repeat}\n`);

  const sessions = SESSIONS.filter((s) => !v.scenarios || v.scenarios.includes(s.scenario));
  const copies: SessionCopy[] = [];
  for (const s of sessions) for (let n = 1; n <= (v.copies ?? COPIES); n++) copies.push(copySession(s, n, rng));
  const lists = copies.map(itemsOf);
  let batches: Batch[];
  if (v.order === 'shuffled') batches = cut(rng.shuffle(lists.flat()), rng, v.maxBatch ?? 24);
  else if (v.order === 'in-order') batches = cut(mergeInOrder(lists, rng), rng, v.maxBatch ?? 24);
  else
    batches = mergeInOrder(
      copies.map((c, i) => c.requests.map((req) => ({ items: itemsOf({ ...c, requests: [req] }, i) }))),
      rng,
    );
  if (v.duplicates) batches = withDuplicates(batches, rng);

  const cluster = v.cluster ? await startRedisCluster() : undefined;
  const redis = cluster ? undefined : await startRedis();
  const redisEnv: Record<string, string> = cluster
    ? { REDIS_URL: cluster.url, REDIS_CLUSTER: 'true' }
    : { REDIS_URL: redis!.url };
  const client: Client = cluster
    ? new Cluster([cluster.nodes[0]!], { redisOptions: { maxRetriesPerRequest: null } })
    : new Redis(redis!.url, { maxRetriesPerRequest: null });
  const procs: BridgePeer[] = [];
  try {
    const common = { ...redisEnv, LLMFLOW_URL: llmflow.url, LOG_LEVEL: 'info' };
    const ingest = await startBridge({ ...common, BRIDGE_ROLE: 'ingest' }, BRIDGE);
    procs.push(ingest);
    for (let i = 0; i < v.workers; i++)
      procs.push(
        await startBridge(
          {
            ...common,
            BRIDGE_ROLE: 'worker',
            ...(v.concurrency && { BRIDGE_WORKER_CONCURRENCY: String(v.concurrency) }),
          },
          BRIDGE,
        ),
      );

    if (cluster) {
      // The sessions of one batch land on different masters.
      const masterOf = await clusterMap(client as Cluster);
      const masters = new Map<string, string>();
      for (const c of copies) masters.set(c.session, await masterOf(c.session));
      const spread = batches.filter(
        (b) => new Set(b.items.map((it) => masters.get(copies[it.copy]!.session))).size > 1,
      ).length;
      process.stderr.write(
        `race ${v.name}: ${spread} of ${batches.length} batches hold sessions of several masters; masters used: ${new Set(masters.values()).size}\n`,
      );
      assert.equal(new Set(masters.values()).size, 3, 'the copies spread over all three masters');
      assert.ok(
        spread >= batches.length / 4,
        `batches holding sessions of several masters: ${spread} of ${batches.length}`,
      );
    }

    const started = Date.now();
    await postBatches(ingest.url, batches, v.posters);
    await drained(client, v.name);
    const processedMs = Date.now() - started;

    const expected = (c: SessionCopy) => references.get(c.scenario)!.shape;
    const { shapes } = await settle(
      copies.map((c) => c.session),
      SETTLE_MS,
      (s) => copies.every((c) => sameShape(expected(c), s.get(c.session)!)),
    );
    const settledMs = Date.now() - started;

    const ledgers = new Map((await ledgersOf(client)).map((l) => [l.session, l]));
    const problems: { copy: SessionCopy; trees?: string; ledger?: string }[] = [];
    for (const c of copies) {
      const got = shapes.get(c.session)!;
      const ref = references.get(c.scenario)!;
      const trees = sameShape(ref.shape, got) ? undefined : diffShapes(ref.shape, got);
      const ledger = ledgers.get(c.session);
      const ledgerDiffs: string[] = [];
      if (!ledger) ledgerDiffs.push('no ledger');
      else {
        const want = roundSums(expectedLedger(c));
        const have = roundSums(ledger.events);
        if (JSON.stringify(want) !== JSON.stringify(have))
          ledgerDiffs.push(`events ${JSON.stringify(have)}, its api_request events add up to ${JSON.stringify(want)}`);
        if (JSON.stringify(ledger.turns) !== JSON.stringify(ref.ledger.turns))
          ledgerDiffs.push(
            `turns ${JSON.stringify(ledger.turns)}, the reference's ${JSON.stringify(ref.ledger.turns)}`,
          );
      }
      if (trees || ledgerDiffs.length)
        problems.push({ copy: c, trees, ledger: ledgerDiffs.length ? ledgerDiffs.join('; ') : undefined });
    }
    const end = await queueState(client);
    const reasons = end.retrying + end.failed > 0 ? await failureReasons(client) : [];

    const byScenario = new Map<string, number>();
    for (const p of problems) byScenario.set(p.copy.scenario, (byScenario.get(p.copy.scenario) ?? 0) + 1);
    const summary =
      `race ${v.name}: ${problems.length} of ${copies.length} copies differ from the reference ` +
      `(trees: ${problems.filter((p) => p.trees).length}, ledger: ${problems.filter((p) => p.ledger).length}` +
      `${byScenario.size ? `; by scenario: ${[...byScenario].map(([s, n]) => `${s} ${n}`).join(', ')}` : ''}); ` +
      `${batches.length} batches (${batches.filter((b) => b.duplicate).length} duplicates), ` +
      `processed in ${processedMs} ms, compared at ${settledMs} ms; batches retrying: ${end.retrying}, failed: ${end.failed}${reasons.length ? ` (${reasons.join('; ')})` : ''}; ${repeat}`;
    const details = problems.map(
      (p) =>
        `--- ${p.copy.label} (session ${p.copy.session})\n` +
        `${p.trees ? `${p.trees}\n` : ''}${p.ledger ? `  ledger: ${p.ledger}\n` : ''}`,
    );
    const report = path.join(REPORT_DIR, `ccbridge-race-${v.name.replace(/\W+/g, '-')}-${seed}.txt`);
    writeFileSync(report, `${summary}\n\n${details.join('\n')}`);
    process.stderr.write(`${summary}\nfull report: ${report}\n`);
    assert.ok(
      problems.length === 0 && end.retrying + end.failed === 0,
      `${summary}\nfull report: ${report}\n\n${details.slice(0, 6).join('\n')}${details.length > 6 ? `\n(${details.length - 6} more in the report)` : ''}`,
    );
  } finally {
    client.disconnect();
    await Promise.all(procs.map((p) => p.stop()));
    await Promise.all([redis?.stop(), cluster?.stop()]);
  }
}

test('the reference: each session processed alone, in order, has a root per turn and no orphans', () => {
  const problems = [...references].flatMap(([scenario, r]) =>
    r.shape.orphans.length ? [`${scenario}: orphans ${r.shape.orphans.join(', ')}\n${r.shape.traces.join('\n')}`] : [],
  );
  assert.deepEqual(problems, [], problems.join('\n'));
});

test('sanity: copies cut exactly as captured, in order, one worker at concurrency 1, equal the reference', async () => {
  await runVariant({
    name: 'as-captured',
    order: 'as-captured',
    duplicates: false,
    workers: 1,
    concurrency: 1,
    posters: 1,
  });
});

test('(a) records shuffled across sessions, cut at random, a tenth posted twice, by 4 posters, 2 workers: every copy equals the reference', async () => {
  await runVariant({ name: 'a-shuffled', order: 'shuffled', duplicates: true, workers: 2, posters: 4 });
});

test('(b) the same on a 3-master Redis Cluster, the sessions of one batch on different masters', async () => {
  await runVariant({ name: 'b-cluster', order: 'shuffled', duplicates: true, workers: 2, posters: 4, cluster: true });
});

test('(c) each session in order, cut anywhere (records of one request split across batches), 1 worker at concurrency 1: every copy equals the reference', async () => {
  await runVariant({
    name: 'c-recut',
    order: 'in-order',
    duplicates: false,
    workers: 1,
    concurrency: 1,
    posters: 1,
    maxBatch: 7,
  });
});

test('(d) resumed sessions (eight processes; four, one killed mid-turn), shuffled, a tenth twice, 2 workers: every copy equals the reference', async () => {
  await runVariant({
    name: 'd-resumed',
    order: 'shuffled',
    duplicates: true,
    workers: 2,
    posters: 4,
    scenarios: ['resumed', 'resumed-killed'],
    copies: 2 * COPIES,
    maxBatch: 12,
  });
});
