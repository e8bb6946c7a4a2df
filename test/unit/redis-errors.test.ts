/**
 * Redis's failures typed once (@ccbridge/errors redis.ts), checked against what ioredis really
 * throws when a real redis-server refuses a command, runs out of memory or goes away.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Redis, ReplyError as UntypedReplyError, type Cluster, type RedisOptions } from 'ioredis';
import { kindOf, redisKindOf, type ErrorKind } from '@ccbridge/errors';
import { connectRedis } from '@ccbridge/redis';
import { startRedis, waitFor } from '../support/peers';
import { startRedisCluster } from '../support/redis-cluster';
import { useRedis } from '../support/per-file';

/** ioredis's reply error (redis-errors has no types of its own). */
const ReplyError = UntypedReplyError as new (message: string) => Error;

const peers = useRedis();
/** Connections a test opens besides the file's own. */
const clients: Redis[] = [];
const client = (url: string, options: RedisOptions = {}) => {
  const c = new Redis(url, options);
  c.on('error', () => {}); // the connection's own errors are read where a test wants them
  clients.push(c);
  return c;
};
after(() => {
  for (const c of clients) c.disconnect();
});

/** The error a promise is rejected with. */
async function thrown(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  assert.fail('expected an error');
}

const expectKind = (err: Error, kind: ErrorKind, name: string) => {
  assert.equal(err.name, name, err.message);
  // Recognised as Redis's by the mapping, not merely given kindOf's default.
  assert.equal(redisKindOf(err), kind, `${err.name}: ${err.message}`);
  assert.equal(kindOf(err), kind);
};

test('a key of the wrong type is permanent, in a command and in a script', async () => {
  const redis = peers.client;
  await redis.set('wrong-type', 'x');
  expectKind(await thrown(redis.lpush('wrong-type', 'y')), 'permanent', 'ReplyError');
  expectKind(
    await thrown(redis.eval("return redis.call('LPUSH', KEYS[1], 'y')", 1, 'wrong-type')),
    'permanent',
    'ReplyError',
  );
});

test('a script that fails at run time is permanent: the same input fails the same way', async () => {
  const redis = peers.client;
  for (const script of ['local t = nil; return t.x', "error('no')", "return redis.call('NOSUCHCOMMAND')"]) {
    const err = await thrown(redis.eval(script, 0));
    assert.match(err.message, /^ERR .*user_script:1/);
    expectKind(err, 'permanent', 'ReplyError');
  }
});

test('Redis out of memory (maxmemory, noeviction) is backpressure, in a command and in a script', async () => {
  const redis = peers.client;
  await redis.config('SET', 'maxmemory-policy', 'noeviction');
  await redis.config('SET', 'maxmemory', '1');
  try {
    const err = await thrown(redis.set('full', 'x'));
    assert.match(err.message, /^OOM /);
    expectKind(err, 'backpressure', 'ReplyError');
    expectKind(
      await thrown(redis.eval("return redis.call('SET', KEYS[1], 'x')", 1, 'full')),
      'backpressure',
      'ReplyError',
    );
  } finally {
    await redis.config('SET', 'maxmemory', '0');
  }
});

test('a connection that fails under a command is retryable, whichever way ioredis says so', async () => {
  // A port nothing listens on: a redis-server's, once it is stopped.
  const gone = await startRedis();
  await gone.stop();
  // The socket's own error.
  const refusing = client(gone.url, { retryStrategy: () => null });
  const refused = await new Promise<Error>((resolve) => refusing.once('error', resolve));
  assert.equal((refused as NodeJS.ErrnoException).code, 'ECONNREFUSED');
  assert.equal(redisKindOf(refused), 'retryable');
  // A command retried up to its limit.
  const retried = client(gone.url, { maxRetriesPerRequest: 1, retryStrategy: () => 10 });
  expectKind(await thrown(retried.get('k')), 'retryable', 'MaxRetriesPerRequestError');
  // A producer's command while Redis is away (no offline queue).
  const producer = connectRedis({ url: gone.url }, 'producer') as Redis;
  producer.on('error', () => {});
  clients.push(producer);
  const unwritable = await thrown(producer.get('k'));
  assert.match(unwritable.message, /^Stream isn't writeable/);
  assert.equal(redisKindOf(unwritable), 'retryable');
  // A command on a connection closed.
  const closed = client(peers.redis.url);
  await closed.ping();
  closed.disconnect();
  const err = await thrown(closed.get('k'));
  assert.equal(err.message, 'Connection is closed.');
  assert.equal(redisKindOf(err), 'retryable');
});

test('replies of a cluster that is moving or not ready, and of a server loading, are retryable; other replies keep the default', () => {
  for (const reply of [
    'CLUSTERDOWN The cluster is down',
    'TRYAGAIN Multiple keys request during rehashing of slot',
    'MOVED 3999 127.0.0.1:6381',
    'ASK 3999 127.0.0.1:6381',
    'LOADING Redis is loading the dataset in memory',
    'BUSY Redis is busy running a script',
    "READONLY You can't write against a read only replica.",
  ])
    assert.equal(redisKindOf(new ReplyError(reply)), 'retryable', reply);
  // A setting to fix (a password, say): kindOf's default, the batch waits for the operator.
  assert.equal(redisKindOf(new ReplyError('NOAUTH Authentication required.')), undefined);
  assert.equal(kindOf(new ReplyError('NOAUTH Authentication required.')), 'retryable');
  // Only ioredis's replies are read by their code: an Error of another library is not Redis's.
  assert.equal(redisKindOf(new Error('WRONGTYPE of something else')), undefined);
});

test('on a Redis Cluster, a script refused while its slot migrates, or while the cluster is down, is retryable; so are the redirections ioredis gives up on', async () => {
  const cluster = await startRedisCluster();
  const seed = connectRedis({ url: cluster.url, cluster: true }, 'consumer') as Cluster;
  seed.on('error', () => {});
  try {
    const [a, b] = cluster.nodes.map((n) => client(`redis://${n.host}:${n.port}`)) as [Redis, Redis];
    const [idA, idB] = [await a.cluster('MYID'), await b.cluster('MYID')];
    const ranges = await a.cluster('SLOTS');
    const [fromA, toA] = ranges.find((r) => r[2]?.[1] === cluster.nodes[0]!.port)!;
    const slotOf = async (key: string) => Number(await a.cluster('KEYSLOT', key));
    // Two keys of node A's, in two slots: one stays, the other's slot moves to node B.
    const onA: { key: string; slot: number }[] = [];
    for (let i = 0; onA.length < 2; i++) {
      const slot = await slotOf(`key-${i}`);
      if (slot >= fromA && slot <= toA && !onA.some((k) => k.slot === slot)) onA.push({ key: `key-${i}`, slot });
    }
    const [stays, moves] = onA as [{ key: string; slot: number }, { key: string; slot: number }];
    const tagged = (name: string) => `{${moves.key}}${name}`;
    await a.set(tagged('present'), '1');
    await b.cluster('SETSLOT', moves.slot, 'IMPORTING', idA);
    await a.cluster('SETSLOT', moves.slot, 'MIGRATING', idB);

    // A script declaring one key and building another (as templates do): absent here while its slot migrates.
    const builds = "return redis.call('GET', ARGV[1])";
    const refused = await thrown(seed.eval(builds, 1, stays.key, tagged('absent')));
    assert.match(
      refused.message,
      /^ERR Script attempted to access a non local key in a cluster node script: \w+, on @user_script:1\.$/,
    );
    expectKind(refused, 'retryable', 'ReplyError');
    // The same from a script that declares a key of the moving slot, straight to the node.
    expectKind(await thrown(a.eval(builds, 1, tagged('present'), tagged('absent'))), 'retryable', 'ReplyError');
    // Its declared keys redirected: ASK from the old owner, MOVED from the new one without ASKING,
    // TRYAGAIN with ASKING when some of them have not moved yet.
    const declared = "return redis.call('MGET', KEYS[1], KEYS[2])";
    const ask = await thrown(a.eval(declared, 2, tagged('absent'), tagged('absent2')));
    assert.match(ask.message, /^ASK \d+ /);
    expectKind(ask, 'retryable', 'ReplyError');
    const moved = await thrown(b.eval(declared, 2, tagged('present'), tagged('absent')));
    assert.match(moved.message, /^MOVED \d+ /);
    expectKind(moved, 'retryable', 'ReplyError');
    await b.asking();
    const tryAgain = await thrown(b.eval(declared, 2, tagged('present'), tagged('absent')));
    assert.match(tryAgain.message, /^TRYAGAIN /);
    expectKind(tryAgain, 'retryable', 'ReplyError');
    // ioredis's Cluster follows those, and gives up after its redirections (the last one ASK, MOVED
    // or TRYAGAIN, as its retries fall).
    const gaveUp = await thrown(seed.eval(declared, 2, tagged('present'), tagged('absent')));
    assert.match(gaveUp.message, /^Too many Cluster redirections\. Last error: ReplyError: (TRYAGAIN|MOVED|ASK) /);
    assert.equal(redisKindOf(gaveUp), 'retryable');
    assert.equal(kindOf(gaveUp), 'retryable');

    // Once the slot has settled, the same script runs: retrying was right.
    await a.cluster('SETSLOT', moves.slot, 'STABLE');
    await b.cluster('SETSLOT', moves.slot, 'STABLE');
    assert.equal(await seed.eval(builds, 1, stays.key, tagged('absent')), null);

    // A cluster down (a slot no node serves): a script's command is refused, retryable as CLUSTERDOWN is.
    await a.cluster('DELSLOTS', fromA);
    await waitFor('node A to see the cluster down', async () =>
      (await a.cluster('INFO')).includes('cluster_state:fail'),
    );
    const down = await thrown(a.eval(builds, 0, stays.key));
    assert.match(
      down.message,
      /^ERR Script attempted to execute a command while the cluster is down script: \w+, on @user_script:1\.$/,
    );
    expectKind(down, 'retryable', 'ReplyError');
    expectKind(await thrown(a.eval(builds, 1, stays.key, stays.key)), 'retryable', 'ReplyError');
  } finally {
    seed.disconnect();
    await cluster.stop();
  }
});

test('a script that fails at run time is still permanent on a Redis Cluster', () => {
  assert.equal(
    redisKindOf(
      new ReplyError(
        "ERR user_script:1: Script attempted to access nonexistent global variable 'x' script: 0a1b, on @user_script:1.",
      ),
    ),
    'permanent',
  );
});

test("a producer's command that Redis does not answer fails in time, and is retryable (a request or /readyz never hangs on it)", async () => {
  const stalled = await startRedis();
  try {
    const producer = connectRedis({ url: stalled.url }, 'producer') as Redis;
    producer.on('error', () => {});
    clients.push(producer);
    if (producer.status !== 'ready') await new Promise((resolve) => producer.once('ready', resolve));
    assert.equal(await producer.ping(), 'PONG');
    // Every client's commands held unanswered for 8 s: as a command sent just before Redis went away waits.
    await client(stalled.url).client('PAUSE', 8_000, 'ALL');
    const started = Date.now();
    const err = await thrown(producer.get('k'));
    const waited = Date.now() - started;
    assert.equal(err.message, 'Command timed out');
    assert.equal(redisKindOf(err), 'retryable');
    assert.ok(waited < 7_000, `answered within the producer's timeout, not when Redis came back (${waited} ms)`);
  } finally {
    await stalled.stop();
  }
});
