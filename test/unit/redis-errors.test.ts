/**
 * Redis's failures typed once (@ccbridge/errors redis.ts), checked against what ioredis really
 * throws when a real redis-server refuses a command, runs out of memory or goes away.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Redis, ReplyError as UntypedReplyError, type RedisOptions } from 'ioredis';
import { kindOf, redisKindOf, type ErrorKind } from '@ccbridge/errors';
import { connectRedis } from '@ccbridge/redis';
import { startRedis } from '../support/peers';
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
