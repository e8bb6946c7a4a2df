/**
 * The bridge's scripts (@ccbridge/redis scripts.ts) declare their slot's fence, so that a Redis
 * Cluster runs none of them half way through a move of their slot: there, a script whose declared
 * keys have moved would run on the new master and see the keys it builds (not moved yet) as absent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis, type Cluster } from 'ioredis';
import { connectRedis, defineScript, fenceOf } from '@ccbridge/redis';
import { fileTimeLimit, tempDir } from '../support/peers';
import { startRedisCluster } from '../support/redis-cluster';

fileTimeLimit(3 * 60_000);

test("a key's fence is a key of its hash tag", () => {
  assert.equal(fenceOf('{ccbridge:3}:deadlines'), '{ccbridge:3}:fence');
  assert.equal(fenceOf('{ccbridge}:otlp-batches:wait'), '{ccbridge}:fence');
  // No tag (or an empty one): the whole key is hashed, as it is in {key}.
  assert.equal(fenceOf('plain'), '{plain}:fence');
  assert.equal(fenceOf('{}x'), '{{}x}:fence');
});

test('on a Redis Cluster, a script runs before or after its slot moves, never half way through', async () => {
  const cluster = await startRedisCluster();
  const [a, b, c] = cluster.nodes.map((n) => new Redis(n.port, n.host)) as [Redis, Redis, Redis];
  // A producer's connection: it gives up on a slot's redirections after about a second.
  const seed = connectRedis({ url: cluster.url, cluster: true }, 'producer') as Cluster & {
    builds(declared: string, built: string): Promise<string | null>;
  };
  seed.on('error', () => undefined);
  try {
    // A script as the bridge's are: it declares one key and builds another beside it.
    const dir = tempDir('scripts');
    writeFileSync(
      path.join(dir, 'builds.lua'),
      "local was = redis.call('GET', ARGV[1])\nredis.call('SET', ARGV[1], 'written')\nreturn was",
    );
    defineScript(seed, 'builds', dir, 'builds.lua', 1);

    // A slot of node A's, half way through its move to node B: the declared key has moved, the built one not.
    const [idA, idB] = [await a.cluster('MYID'), await b.cluster('MYID')];
    const [slot] = (await a.cluster('SLOTS')).find((r) => r[2]?.[1] === cluster.nodes[0]!.port)!;
    const tag = await (async () => {
      for (let i = 0; ; i++) if (Number(await a.cluster('KEYSLOT', `k${i}`)) === slot) return `{k${i}}`;
    })();
    const [declared, built] = [`${tag}:declared`, `${tag}:built`];
    await a.set(declared, '1');
    await a.set(built, 'before');
    await b.cluster('SETSLOT', slot, 'IMPORTING', idA);
    await a.cluster('SETSLOT', slot, 'MIGRATING', idB);
    const target = cluster.nodes[1]!;
    await a.migrate(target.host, target.port, declared, 0, 5_000);

    // Redis answers it ASK, then TRYAGAIN, until the slot has moved: it never ran.
    await assert.rejects(seed.builds(declared, built), /^Error: Too many Cluster redirections/);
    await b.asking();
    assert.equal(await b.exists(built), 0, 'the script wrote nothing on the new master');
    assert.equal(await a.get(built), 'before');

    // The rest of the move goes through (no second copy on the new master: no BUSYKEY), and then the script runs, whole.
    await a.migrate(target.host, target.port, built, 0, 5_000);
    for (const node of [b, a, c]) await node.cluster('SETSLOT', slot, 'NODE', idB);
    assert.equal(await seed.builds(declared, built), 'before');
    assert.equal(await b.get(built), 'written');
  } finally {
    seed.disconnect();
    for (const node of [a, b, c]) node.disconnect();
    await cluster.stop();
  }
});
