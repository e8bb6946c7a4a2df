/**
 * Group commit (packages/queue/src/group.ts): requests received while a job is being added go
 * to the queue together, as one job, that the worker reads as one request holding them all.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import { countItems, encodeExportRequest, type Signal } from '@ccbridge/otlp';
import { GroupCommit, batchOf, groupPart, storedBatch, type Group } from '@ccbridge/queue';

/** An add whose outcome the test decides, one call at a time. */
function controlledAdd() {
  const calls: { signal: Signal; group: Group; resolve: () => void; reject: (e: Error) => void }[] = [];
  const add = (signal: Signal, group: Group) =>
    new Promise<void>((resolve, reject) => calls.push({ signal, group, resolve, reject }));
  return { calls, add };
}
const part = (items: number, protobufBytes = 100) => ({ gzipped: new Uint8Array([items]), items, protobufBytes });
/** Lets settled promises run their continuations. */
const settle = () => new Promise((r) => setImmediate(r));
/** Whether a promise has settled yet. */
function tracked(p: Promise<void>) {
  const t = { done: false, failed: undefined as unknown };
  p.then(
    () => (t.done = true),
    (e: unknown) => (t.failed = e),
  );
  return t;
}

test('a lone batch is added at once; those received meanwhile go together in the next job, answered when it is stored', async () => {
  const { calls, add } = controlledAdd();
  const groups = new GroupCommit(add, 10_000);
  const first = tracked(groups.commit('logs', part(1)));
  assert.equal(calls.length, 1);
  assert.deepEqual(
    calls[0]!.group.parts.map((p) => p.items),
    [1],
  );
  const rest = [2, 3, 4].map((n) => tracked(groups.commit('logs', part(n))));
  assert.equal(calls.length, 1, 'nothing else is added while the first add is in flight');
  calls[0]!.resolve();
  await settle();
  assert.ok(first.done);
  assert.equal(calls.length, 2);
  assert.deepEqual(
    calls[1]!.group.parts.map((p) => p.items),
    [2, 3, 4],
  );
  assert.equal(calls[1]!.group.items, 9);
  assert.ok(
    rest.every((r) => !r.done),
    'not answered before their job is stored',
  );
  calls[1]!.resolve();
  await settle();
  assert.ok(rest.every((r) => r.done));
  assert.equal(calls.length, 2);
});

test('a group is not grown past its bound in protobuf bytes: a full one goes beside the add in flight', async () => {
  const { calls, add } = controlledAdd();
  const groups = new GroupCommit(add, 250);
  // Commits not awaited here are answered when the test settles their adds (or never: it ends first).
  void groups.commit('logs', part(1));
  for (const n of [2, 3, 4]) void groups.commit('logs', part(n));
  assert.equal(calls.length, 2, 'parts 2 and 3 filled the waiting group; part 4 sent it');
  assert.deepEqual(
    calls[1]!.group.parts.map((p) => p.items),
    [2, 3],
  );
  void groups.commit('logs', part(5, 1_000));
  assert.equal(calls.length, 3, 'a part larger than the bound alone: part 4 went');
  assert.deepEqual(
    calls[2]!.group.parts.map((p) => p.items),
    [4],
  );
  calls[0]!.resolve();
  await settle();
  assert.deepEqual(
    calls[3]!.group.parts.map((p) => p.items),
    [5],
  );
});

test('a failed add fails every batch of its group (the receiver answers 503), and the next group still goes', async () => {
  const { calls, add } = controlledAdd();
  const groups = new GroupCommit(add, 10_000);
  // Only the group that fails is watched; the first add is resolved below.
  void groups.commit('logs', part(1));
  const a = tracked(groups.commit('logs', part(2)));
  const b = tracked(groups.commit('logs', part(3)));
  calls[0]!.resolve();
  await settle();
  calls[1]!.reject(new Error('Redis went away'));
  await settle();
  assert.match(String(a.failed), /Redis went away/);
  assert.match(String(b.failed), /Redis went away/);
  const c = tracked(groups.commit('logs', part(4)));
  assert.equal(calls.length, 3);
  calls[2]!.resolve();
  await settle();
  assert.ok(c.done);
});

test('signals have lanes of their own: traces never wait for logs', () => {
  const { calls, add } = controlledAdd();
  const groups = new GroupCommit(add, 10_000);
  // Never answered: the test looks only at which adds started.
  void groups.commit('logs', part(1));
  void groups.commit('traces', part(2));
  assert.deepEqual(
    calls.map((c) => c.signal),
    ['logs', 'traces'],
  );
});

/** A logs request of `n` records, each body `<name> <i>`. */
const request = (name: string, n: number) => ({
  resourceLogs: [
    {
      scopeLogs: [
        {
          scope: { name },
          logRecords: Array.from({ length: n }, (_, i) => ({ body: { stringValue: `${name} ${i}` } })),
        },
      ],
    },
  ],
});

test('a group is stored as its gzip members in a row, and read back as one request holding every batch', async () => {
  const received = [
    { items: 2, protobuf: encodeExportRequest('logs', request('a', 2), 'protobuf') },
    { items: 3, protobuf: encodeExportRequest('logs', request('b', 3), 'protobuf') },
  ];
  // One came gzip'd (kept as it came), one did not (compressed by the producer).
  const gzipped = zlib.gzipSync(received[0]!.protobuf, { level: 9 });
  const parts = await Promise.all([groupPart({ ...received[0]!, gzipped }), groupPart(received[1]!)]);
  assert.deepEqual(Buffer.from(parts[0].gzipped), gzipped, "a gzip'd body is stored as it came");
  const stored = storedBatch('logs', { parts, items: 5, protobufBytes: 0 });
  assert.equal(stored.items, 5);
  const job = await batchOf(stored);
  assert.equal(countItems('logs', job.request), 5);
  const records = (job.request as ReturnType<typeof request>).resourceLogs.flatMap((rl) =>
    rl.scopeLogs.flatMap((sl) => sl.logRecords.map((r) => r.body.stringValue)),
  );
  assert.deepEqual(records, ['a 0', 'a 1', 'b 0', 'b 1', 'b 2']);
});

test('a job inflates whole: a group of members of any size, and one past the largest output chunk', async () => {
  const bodiesOf = async (...groups: [string, number][]) => {
    const parts = await Promise.all(
      groups.map(([name, n]) =>
        groupPart({ items: n, protobuf: encodeExportRequest('logs', request(name, n), 'protobuf') }),
      ),
    );
    const stored = storedBatch('logs', { parts, items: 0, protobufBytes: 0 });
    const job = await batchOf(stored);
    return { gzipBytes: Buffer.from(stored.data, 'base64').length, records: countItems('logs', job.request) };
  };
  // A large first member and a small last one.
  assert.deepEqual((await bodiesOf(['big', 20_000], ['small', 1])).records, 20_001);
  // One member inflating past the largest chunk (1 MiB), stored small enough to inflate on the event loop.
  const large = await bodiesOf([`large ${'x'.repeat(1000)}`, 2_000]);
  assert.equal(large.records, 2_000);
  assert.ok(large.gzipBytes <= 256 * 1024, `inflated on the event loop (${large.gzipBytes} bytes gzip'd)`);
  assert.equal((await bodiesOf(['one', 1])).records, 1);
});
