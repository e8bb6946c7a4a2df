/**
 * Slot migration (issue 23, "Done when" 3): on a real 3-master Redis Cluster, the slots the
 * bridge's keys live in move between masters while batches flow, and nothing is lost and
 * nothing ends in the failed set.
 *
 * Real Claude Code sessions (test/fixtures/sessions-2.1.328; the scenarios the race test's
 * variant (c) shows equal to their reference, not the resumed ones), each copied several times
 * with fresh ids, in order per copy, interleaved and cut into batches anywhere, go to an ingest
 * feeding two worker processes at the default concurrency. The slots of the shards the copies'
 * sessions hash to (keys.ts `shardKeys`: every per-session key of the scripts lives there) and
 * the slot of the queue's tag (BullMQ's keys, the sessions' ledgers) move from master to master,
 * each once a round, as `redis-cli --cluster reshard` moves a slot: IMPORTING, MIGRATING, its keys
 * MIGRATEd one at a time, then SETSLOT NODE everywhere; half way through its keys the slot is
 * held while the next part of the batches is posted and processed (a few shards' slots longer
 * than a worker waits for a moving slot, so that batch attempts fail and are retried). Once a
 * round `redis-cli --cluster reshard` itself moves a block of slots on to the next master.
 *
 * Then: no batch in BullMQ's failed set, none left retrying, no dead letters; every span of each
 * copy's reference (the same session processed alone, race.ts processAlone) is in LLMFlow, under
 * the same parents, with no orphan (an answer that came late may be an event row of its own, as
 * mapping.ts draws late events; nothing else may be added); and each copy's ledger counts its
 * api_request events once. The test also asserts that the moves hit the work: every slot moved
 * each round to another master, with keys; most moves had batches queued, running or retrying
 * while the slot was half moved; and batch attempts failed of the migration.
 *
 * MIGRATE_SEED repeats a run's batches and moves (the seed is printed; timing differs);
 * MIGRATE_COPIES (3) copies per scenario; MIGRATE_DEBUG=1 writes the bridges' logs and BullMQ's
 * events to sm-*.log in the OS temp dir.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Cluster } from 'ioredis';
import { deadLetterKeys, queueKey, shardKeys, shardOf } from '@ccbridge/redis';
import {
  fileTimeLimit,
  post,
  startBridge,
  startLlmflow,
  waitFor,
  type BridgePeer,
  type LlmflowPeer,
} from '../support/peers';
import { slotMover, startRedisCluster, type SlotMove } from '../support/redis-cluster';
import {
  Rng,
  copySession,
  cut,
  diffShapes,
  expectedLedger,
  ledgersOf,
  failureReasons,
  itemsOf,
  loadSessions,
  mergeInOrder,
  processAlone,
  queueState,
  readRows,
  requestOfItems,
  roundSums,
  sameShape,
  shapesBySession,
  type Batch,
  type Reference,
  type SessionCopy,
  type Shape,
} from '../support/race';

fileTimeLimit(8 * 60_000);

/** The scenarios whose copies equal their reference however their batches are cut (race.test.ts (c)). */
const SCENARIOS = ['foreground', 'background', 'parallel', 'hooks', 'subagent-hooks', 'many-prompts'];
const SESSIONS = loadSessions().filter((s) => SCENARIOS.includes(s.scenario));
const COPIES = Number(process.env.MIGRATE_COPIES ?? 3);
const SEED = process.env.MIGRATE_SEED ? Number(process.env.MIGRATE_SEED) >>> 0 : Math.floor(Math.random() * 2 ** 32);
/** Rounds of moves: in each, every slot that matters moves once. */
const ROUNDS = 3;
/**
 * How long a slot is held half moved (ms), at random between these: mostly shorter than the
 * worker's patience with a moving slot (@ccbridge/redis connectRedis: about 4 s), which rides
 * it out; in each round, LONG_HOLDS shards' slots longer (shards the batches posted meanwhile
 * touch), so that the scripts of those batches fail and are retried.
 */
const HOLD_MS = [100, 1_500] as const;
const LONG_HOLD_MS = [5_500, 7_000] as const;
const LONG_HOLDS = 2;

let llmflow: LlmflowPeer;
let references: Map<string, Reference>;

before(async () => {
  llmflow = await startLlmflow();
  references = await processAlone(llmflow, SESSIONS, 60_000);
});

after(async () => {
  await llmflow?.stop();
});

/** Each span of a shape as the path of labels from its trace's root down to it, sorted (a multiset). */
function spanPaths(shape: Shape): string[] {
  const out: string[] = [];
  for (const trace of shape.traces) {
    const path: string[] = [];
    for (const line of trace.split('\n')) {
      path.length = (line.length - line.trimStart().length) / 2;
      path.push(line.trim());
      out.push(path.join(' > '));
    }
  }
  return out.sort();
}

/** What `a` holds more of than `b` (multisets). */
function minus(a: string[], b: string[]): string[] {
  const left = new Map<string, number>();
  for (const x of b) left.set(x, (left.get(x) ?? 0) + 1);
  return a.filter((x) => {
    const n = left.get(x) ?? 0;
    if (n > 0) left.set(x, n - 1);
    return n === 0;
  });
}

/** An event's own row (`span.type: event`), in its place (not an orphan). */
const isEventRow = (path: string) => path.endsWith(' (event)') && !path.startsWith('[ORPHAN');

/** The failures of a cluster in motion, as the workers log the batches they retry. */
const MIGRATION_ERRORS = /non local key|TRYAGAIN|ASK |MOVED |Too many Cluster redirections|CLUSTERDOWN/;

/**
 * Posts a batch until the ingest takes it: a 503 (the queue's slot moving under the ingest, which
 * fails fast) is sent again, as an OTLP exporter does. Resolves with how many times it was refused.
 */
async function postUntilTaken(url: string, batch: Batch): Promise<number> {
  const body = Buffer.from(JSON.stringify(requestOfItems(batch.items)));
  let refused = 0;
  let other: string | undefined;
  await waitFor(
    'the ingest to take a batch',
    async () => {
      const r = await post(`${url}/v1/logs`, body, 'application/json');
      if (r.status !== 200 && r.status !== 503) other = `HTTP ${r.status} ${r.body.toString()}`;
      if (r.status === 503) refused++;
      return r.status === 200 || other !== undefined;
    },
    30_000,
    100,
  );
  if (other) throw new Error(`the ingest refused a batch: ${other}`);
  return refused;
}

test('the slots of the shards and of the queue move between masters while batches flow: nothing lost, nothing failed', async () => {
  const rng = new Rng(SEED);
  process.stderr.write(`slot-migration: seed ${SEED} (MIGRATE_SEED=${SEED} repeats this run)\n`);
  const copies: SessionCopy[] = [];
  for (const s of SESSIONS) for (let n = 1; n <= COPIES; n++) copies.push(copySession(s, n, rng));
  const batches = cut(mergeInOrder(copies.map(itemsOf), rng), rng, 8);

  const cluster = await startRedisCluster();
  const client = new Cluster([cluster.nodes[0]!], { redisOptions: { maxRetriesPerRequest: null } });
  client.on('error', () => undefined);
  const mover = await slotMover(cluster);
  const procs: BridgePeer[] = [];
  try {
    const common = { REDIS_URL: cluster.url, REDIS_CLUSTER: 'true', LLMFLOW_URL: llmflow.url, LOG_LEVEL: 'info' };
    procs.push(await startBridge({ ...common, BRIDGE_ROLE: 'ingest' }));
    for (let i = 0; i < 2; i++) procs.push(await startBridge({ ...common, BRIDGE_ROLE: 'worker' }));
    const [ingest, ...workers] = procs as [BridgePeer, ...BridgePeer[]];

    // The slots that matter: each shard the copies hash to (every key of its sessions), and the
    // queue's (BullMQ's keys, the sessions' ledgers).
    const shards = [...new Set(copies.map((c) => shardOf(c.session)))].sort((a, b) => a - b);
    const slotOfShard = new Map<number, number>();
    for (const shard of shards) slotOfShard.set(shard, await mover.keyslot(shardKeys(shard).deadlines));
    const shardSlots = [...slotOfShard.values()];
    const queueSlot = await mover.keyslot(queueKey('wait'));
    const slots = [queueSlot, ...shardSlots];
    const ownersBefore = await Promise.all(slots.map((s) => mover.owner(s)));
    process.stderr.write(
      `slot-migration: ${copies.length} copies in ${batches.length} batches, shards ${shards.join(', ')}; ` +
        `slots ${slots.join(', ')} (the queue's: ${queueSlot}) on masters ${ownersBefore.join(', ')}\n`,
    );

    // The batches go out in parts, each posted while a slot is half moved: ROUNDS rounds of
    // moves, every slot once a round, plus a redis-cli reshard a round.
    const parts: Batch[][] = [];
    const moveCount = ROUNDS * (slots.length + 1);
    for (let i = 0; i < moveCount; i++)
      parts.push(
        batches.slice(Math.floor((i * batches.length) / moveCount), Math.floor(((i + 1) * batches.length) / moveCount)),
      );
    let refused = 0;
    let posted = 0;
    const postPart = async () => {
      const part = parts.shift() ?? [];
      for (const b of part) refused += await postUntilTaken(ingest.url, b);
      posted += part.length;
      return { batches: part.length, ...(await queueState(client)) };
    };

    // The mover, as an operator resharding by hand: one slot at a time (as redis-cli moves them;
    // two at once would race each other's config epochs), every slot that matters, in a random
    // order, to another master, its keys MIGRATEd one by one and the slot held half moved while
    // a part of the batches is posted and processed. While the queue's slot moves, the ingest
    // cannot queue (it answers 503 at once): its part is posted on until the move is over.
    const moves: SlotMove[] = [];
    const reshards: number[][] = [];
    const started = Date.now();
    for (let round = 0; round < ROUNDS; round++) {
      let longs = 0;
      for (const slot of rng.shuffle([...slots])) {
        const to = ((await mover.owner(slot)) + rng.int(1, 2)) % 3;
        const touched = new Set((parts[0] ?? []).flatMap((b) => b.items.map((it) => copies[it.copy]!.session)));
        const long = longs < LONG_HOLDS && [...touched].some((s) => slotOfShard.get(shardOf(s)) === slot);
        if (long) longs++;
        const [lo, hi] = long ? LONG_HOLD_MS : HOLD_MS;
        let posting: Promise<unknown> | undefined;
        moves.push(
          await mover.move(slot, to, {
            holdMs: rng.int(lo, hi),
            whileHalfMoved: async () => {
              if (slot !== queueSlot) return postPart();
              posting = postPart();
              return { batches: 0, ...(await queueState(client)) };
            },
          }),
        );
        await posting;
      }
      // And redis-cli itself: a block of slots on to the next master, a part posted meanwhile
      // (the same block round the masters, a round apart: moved straight back, the cluster bus
      // may still carry the first move's claims and leave a slot served by nobody).
      const [reshard] = await Promise.all([mover.reshard(round % 3, (round + 1) % 3, 16), postPart()]);
      reshards.push(reshard);
    }
    assert.equal(posted, batches.length, 'every batch posted');
    // Every batch processed, those retrying included.
    await waitFor(
      'every batch processed (none waiting, running or waiting for a retry)',
      async () => {
        const q = await queueState(client);
        return q.pending === 0 && q.retrying === 0;
      },
      90_000,
      200,
    );
    const processedMs = Date.now() - started;

    // The moves happened, with batches in flight, and the workers met them.
    const ownersAfter = await Promise.all(slots.map((s) => mover.owner(s)));
    const movesOf = (slot: number) => moves.filter((m) => m.slot === slot);
    const during = (m: SlotMove) => m.during as Awaited<ReturnType<typeof postPart>>;
    const busy = moves.filter((m) => during(m).pending + during(m).retrying > 0);
    const logged = workers.flatMap((w) => w.output().split('\n')).filter((l) => MIGRATION_ERRORS.test(l));
    // A batch attempt that failed: retried (its failure retryable), or given up on (the failed set, asserted empty below).
    const failedAttempts = logged.filter((l) => /a batch failed; it will be retried|gave up on a batch/.test(l));
    const reasons = new Map<string, number>();
    for (const l of logged) {
      const { msg, err } = JSON.parse(l.slice(l.indexOf('{'))) as { msg: string; err: string };
      const key = `${msg}: ${err.replace(/\d+/g, 'N').slice(0, 110)}`;
      reasons.set(key, (reasons.get(key) ?? 0) + 1);
    }
    process.stderr.write(
      `slot-migration: ${moves.length} slot moves (${moves.reduce((n, m) => n + m.keys, 0)} keys MIGRATEd, ` +
        `${busy.length} with batches queued, running or retrying while the slot was half moved; ` +
        `the queue's slot ${movesOf(queueSlot).length} times), ${reshards.length} reshards of 16 slots by redis-cli; ` +
        `masters before ${ownersBefore.join(',')}, after ${ownersAfter.join(',')}; batches refused (503) and posted again: ${refused}; ` +
        `batch attempts failed by the migration: ${failedAttempts.length}; processed in ${processedMs} ms; ` +
        `the workers logged: ${[...reasons].map(([r, n]) => `${n}x ${r}`).join('; ') || 'nothing'}\n`,
    );
    for (const slot of slots) {
      const its = movesOf(slot);
      assert.equal(its.length, ROUNDS, `slot ${slot} moved ${its.length} times`);
      assert.ok(
        its.every((m) => m.from !== m.to) && its.some((m) => m.keys > 0),
        `slot ${slot}: to another master each time, with keys`,
      );
    }
    assert.ok(busy.length >= moves.length / 2, `moves with batches in flight: ${busy.length} of ${moves.length}`);
    assert.ok(failedAttempts.length > 0, 'the workers met the migration: batch attempts failed of it');

    // Nothing failed.
    const q = await queueState(client);
    const deadLetters = await client.zcard(deadLetterKeys().index);
    assert.deepEqual(
      { failed: q.failed, retrying: q.retrying, deadLetters },
      { failed: 0, retrying: 0, deadLetters: 0 },
      `batches failed or retrying: ${(await failureReasons(client)).join('; ')}`,
    );

    // Nothing lost: every span of each copy's reference is there, under the same parents, and no
    // orphan; and its ledger counts each of its api_request events once. A copy may hold more:
    // an answer that came after its LLM span was sent is an event row of its own (mapping.ts:
    // LLMFlow keeps a span's first copy), as a batch retried seconds later brings it; nothing else.
    const expected = (c: SessionCopy) => references.get(c.scenario)!.shape;
    const compare = (c: SessionCopy, got: Shape) => {
      const [want, have] = [spanPaths(expected(c)), spanPaths(got)];
      const extra = minus(have, want);
      return {
        lost: minus(want, have),
        lateRows: extra.filter(isEventRow),
        other: extra.filter((p) => !isEventRow(p)),
      };
    };
    let shapes = new Map<string, Shape>();
    const processed = Date.now();
    await waitFor(
      "every span of every copy's reference in LLMFlow",
      async () => {
        shapes = shapesBySession(
          await readRows(llmflow),
          copies.map((c) => c.session),
        );
        return copies.every((c) => {
          const d = compare(c, shapes.get(c.session)!);
          return d.lost.length + d.other.length === 0;
        });
      },
      60_000,
      500,
    ).catch(() => undefined);
    const ledgers = new Map((await ledgersOf(client)).map((l) => [l.session, l]));
    const problems: string[] = [];
    let [lost, lateRows, identical] = [0, 0, 0];
    for (const c of copies) {
      const got = shapes.get(c.session)!;
      const d = compare(c, got);
      lost += d.lost.length;
      lateRows += d.lateRows.length;
      if (sameShape(expected(c), got)) identical++;
      if (d.lost.length + d.other.length > 0)
        problems.push(
          `--- ${c.label} (session ${c.session}): ${d.lost.length} span(s) of the reference missing, ` +
            `${d.other.length} span(s) it lacks\n${diffShapes(expected(c), got)}`,
        );
      const ledger = ledgers.get(c.session);
      const want = roundSums(expectedLedger(c));
      const have = ledger && roundSums(ledger.events);
      if (JSON.stringify(want) !== JSON.stringify(have))
        problems.push(
          `--- ${c.label}: ledger ${JSON.stringify(have)}, its api_request events add up to ${JSON.stringify(want)}`,
        );
    }
    process.stderr.write(
      `slot-migration: ${Date.now() - processed} ms after the last batch, ${identical} of ${copies.length} copies' trees identical to their reference's; ` +
        `late answers drawn as event rows: ${lateRows}; spans of the references missing: ${lost}\n`,
    );
    assert.equal(problems.length, 0, `${problems.length} problem(s)\n${problems.slice(0, 8).join('\n')}`);
  } finally {
    if (process.env.MIGRATE_DEBUG) {
      // BullMQ's events (added, active, delayed, stalled, ...) and every bridge's log, whole.
      const events = (await client.xrange(queueKey('events'), '-', '+')) as [string, string[]][];
      writeFileSync(
        path.join(os.tmpdir(), 'sm-events.log'),
        events
          .map(([id, f]) => `${new Date(Number(id.split('-')[0])).toISOString()} ${f.join(' ').slice(0, 300)}`)
          .join('\n'),
      );
      for (const p of procs)
        writeFileSync(path.join(os.tmpdir(), `sm-${p.name.replace(/\W+/g, '')}-${p.child.pid}.log`), p.output());
    }
    mover.close();
    client.disconnect();
    await Promise.all(procs.map((p) => p.stop()));
    await cluster.stop();
  }
});
