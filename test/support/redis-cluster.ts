/**
 * A real three-master Redis Cluster on loopback ports, for the scale-out tests: the interaction
 * store and the BullMQ queue running against a cluster rather than a single redis-server.
 * Each node is Debian's redis-server in its own temporary directory; redis-cli joins them.
 */
import { once } from 'node:events';
import net from 'node:net';
import { Redis } from 'ioredis';
import { freePort, launch, tempDir, waitFor, type Proc } from './peers';
import { startOnFreePorts, waitForStart } from './procs';

/** Redis Cluster talks node-to-node on the client port + 10000 (the cluster bus). */
const BUS_OFFSET = 10_000;

export interface RedisClusterPeer {
  nodes: { host: string; port: number }[];
  /** A seed node: redis://127.0.0.1:P1. */
  url: string;
  /** Stops every node (SIGTERM) and waits for it to exit; safe to call again. */
  stop(): Promise<void>;
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A free port whose bus port is free too, neither of them among `taken`. */
async function clusterPort(taken: Set<number>): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = await freePort();
    // The bus port must stay a valid port, hence port + 10000 <= 65535.
    if (port >= 65_535 - BUS_OFFSET || taken.has(port) || taken.has(port + BUS_OFFSET)) continue;
    if (!(await portIsFree(port + BUS_OFFSET))) continue;
    taken.add(port).add(port + BUS_OFFSET);
    return port;
  }
  throw new Error('found no free port pair (P, P+10000) for a Redis Cluster node');
}

/** Runs redis-cli to completion and returns its output; fails on a non-zero exit or after `timeoutMs`. */
async function redisCli(args: string[], timeoutMs = 30_000): Promise<string> {
  const proc = launch('redis-cli', args, process.env, { mayExit: true });
  const closed = once(proc.child, 'close'); // 'close': after its output has been read, too
  const timer = setTimeout(() => void proc.stop('SIGKILL'), timeoutMs);
  const [code] = (await closed.finally(() => clearTimeout(timer))) as [number | null];
  if (code !== 0) throw new Error(`redis-cli ${args.join(' ')} exited ${code}: ${proc.output()}`);
  return proc.output();
}

function startNode(port: number): Proc {
  return launch(
    'redis-server',
    [
      '--port',
      String(port),
      '--cluster-enabled',
      'yes',
      '--cluster-config-file',
      `nodes-${port}.conf`,
      '--cluster-node-timeout',
      '2000',
      '--bind',
      '127.0.0.1',
      '--dir',
      tempDir(`redis-cluster-${port}`),
      '--save',
      '',
      '--appendonly',
      'no',
    ],
    process.env,
    { name: `redis-server (cluster) :${port}` },
  );
}

/** Its ports are chosen before the nodes bind them: when another process took one first, it starts again. */
export function startRedisCluster(): Promise<RedisClusterPeer> {
  return startOnFreePorts(startClusterOnce);
}

async function startClusterOnce(): Promise<RedisClusterPeer> {
  const taken = new Set<number>();
  const ports: number[] = [];
  for (let i = 0; i < 3; i++) ports.push(await clusterPort(taken));
  const procs = ports.map(startNode);
  const stop = async () => {
    await Promise.all(procs.map((p) => p.stop())); // stop() only signals a process still running
  };
  try {
    await Promise.all(
      procs.map((proc, i) =>
        waitForStart(proc, `cluster node ${ports[i]} to accept connections`, () =>
          proc.output().includes('Ready to accept connections'),
        ),
      ),
    );
    // Three masters, the 16384 slots split between them, no replicas.
    await redisCli([
      '--cluster',
      'create',
      ...ports.map((p) => `127.0.0.1:${p}`),
      '--cluster-replicas',
      '0',
      '--cluster-yes',
    ]);
    // Every node must see all slots covered before a client may rely on any of them.
    for (const port of ports) {
      await waitFor(`cluster_state:ok on node ${port}`, async () =>
        (await redisCli(['-p', String(port), 'cluster', 'info'], 5_000)).includes('cluster_state:ok'),
      );
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { nodes: ports.map((port) => ({ host: '127.0.0.1', port })), url: `redis://127.0.0.1:${ports[0]}`, stop };
}

/** One slot moved from a master to another (indexes into the cluster's `nodes`). */
export interface SlotMove {
  slot: number;
  from: number;
  to: number;
  /** Keys MIGRATEd. */
  keys: number;
  /** What `whileHalfMoved` answered, when given. */
  during?: unknown;
  startedAt: number;
  endedAt: number;
}

export interface SlotMover {
  /** The slot of a key (CLUSTER KEYSLOT). */
  keyslot(key: string): Promise<number>;
  /** The master serving `slot` (an index into the cluster's nodes), once every master sees the same (for 10 s at most). */
  owner(slot: number): Promise<number>;
  /**
   * Moves `slot` to master `to` the way `redis-cli --cluster reshard` moves each of its slots
   * (clusterManagerMoveSlot in redis-cli.c): the target IMPORTING, the source MIGRATING, the
   * slot's keys MIGRATEd `pipeline` at a time (its --cluster-pipeline; 1 here by default), then
   * SETSLOT NODE on the target, the source and the other masters. Half-way through its keys
   * (some on each node: what a script of that slot meets while a reshard runs) the slot is held
   * `holdMs`, while `whileHalfMoved` runs (its answer is kept in the move's record). One move at
   * a time, as redis-cli moves slots: moves at once race each other's config epochs (the cluster
   * bus may hand a slot back to its old master, keys and all elsewhere), and two MIGRATEs in
   * opposite directions block both masters until their time-out.
   */
  move(
    slot: number,
    to: number,
    options?: { pipeline?: number; holdMs?: number; whileHalfMoved?: () => Promise<unknown> },
  ): Promise<SlotMove>;
  /**
   * `redis-cli --cluster reshard` itself: `slots` slots from master `from` to master `to`
   * (redis-cli picks the lowest-numbered of `from`'s), `pipeline` keys per MIGRATE; resolves
   * with the slots it moved.
   */
  reshard(from: number, to: number, slots: number, pipeline?: number): Promise<number[]>;
  close(): void;
}

/** Direct connections to each master, to move slots between them as an operator does. */
export async function slotMover(cluster: RedisClusterPeer): Promise<SlotMover> {
  const nodes = cluster.nodes.map(
    ({ host, port }) => new Redis({ host, port, maxRetriesPerRequest: 1, lazyConnect: false }),
  );
  for (const n of nodes) n.on('error', () => undefined);
  const ids = await Promise.all(nodes.map(async (n) => String(await n.call('CLUSTER', 'MYID'))));
  const byId = new Map(ids.map((id, i) => [id, i]));
  const setslot = (i: number, slot: number, ...args: string[]) => nodes[i]!.call('CLUSTER', 'SETSLOT', slot, ...args);
  const keysIn = async (i: number, slot: number, n: number) =>
    (await nodes[i]!.call('CLUSTER', 'GETKEYSINSLOT', slot, n)) as string[];

  /** Who serves each slot, as node `i` sees it (-1: nobody, or a migration it is part of under way). */
  const viewOf = async (i: number): Promise<Int16Array> => {
    const view = new Int16Array(16_384).fill(-1);
    for (const line of String(await nodes[i]!.call('CLUSTER', 'NODES')).split('\n')) {
      const [id, , , , , , , , ...ranges] = line.split(' ');
      for (const r of ranges) {
        if (r.startsWith('[')) continue; // [slot->-id], [slot-<-id]: a migration under way
        const [lo, hi = lo] = r.split('-').map(Number);
        view.fill(byId.get(id!) ?? -1, lo, hi! + 1);
      }
    }
    return view;
  };
  /** What the masters disagree about, or whose slots nobody serves; undefined when they agree on every slot. */
  const disagreement = async (): Promise<string | undefined> => {
    const views = await Promise.all(nodes.map((_, i) => viewOf(i)));
    for (let slot = 0; slot < 16_384; slot++) {
      const seen = views.map((v) => v[slot]!);
      if (seen.some((o) => o !== seen[0]) || seen[0] === -1)
        return `slot ${slot}: served by ${seen.map((o, i) => `${o} as master ${i} sees it`).join(', ')}`;
    }
    return undefined;
  };
  /**
   * Waits until every master sees every slot served, each by the same master: the cluster bus
   * spreads a move's new owner (and the config epochs behind it) in a moment, and redis-cli
   * refuses to reshard a cluster whose nodes do not agree yet.
   */
  const settled = async () => {
    let last: string | undefined;
    await waitFor(
      'the masters to agree on who serves every slot',
      async () => (last = await disagreement()) === undefined,
      10_000,
      50,
    ).catch((err: unknown) => {
      throw new Error(`${String(err)}; ${last}`);
    });
  };
  const owner = async (slot: number) => {
    await settled();
    return (await viewOf(0))[slot]!;
  };

  return {
    keyslot: async (key) => Number(await nodes[0]!.call('CLUSTER', 'KEYSLOT', key)),
    owner,
    async move(slot, to, { pipeline = 1, holdMs = 0, whileHalfMoved } = {}) {
      const startedAt = Date.now();
      const from = await owner(slot);
      if (from === to) throw new Error(`slot ${slot} is on master ${to} already`);
      const { host, port } = cluster.nodes[to]!;
      await setslot(to, slot, 'IMPORTING', ids[from]!);
      await setslot(from, slot, 'MIGRATING', ids[to]!);
      const total = Number(await nodes[from]!.call('CLUSTER', 'COUNTKEYSINSLOT', slot));
      let keys = 0;
      const migrate = async (upTo: number) => {
        while (keys < upTo) {
          const batch = await keysIn(from, slot, Math.min(pipeline, upTo - keys));
          if (batch.length === 0) return;
          await nodes[from]!.call('MIGRATE', host, port, '', 0, 10_000, 'KEYS', ...batch).catch((err: Error) => {
            // BUSYKEY: the target holds the key already, written there while the slot was moving.
            throw new Error(`slot ${slot}, master ${from} to ${to}: MIGRATE ${batch.join(' ')}: ${err.message}`);
          });
          keys += batch.length;
        }
      };
      await migrate(Math.floor(total / 2));
      const [during] = await Promise.all([
        whileHalfMoved?.(),
        new Promise((r) => setTimeout(r, holdMs)), // holding a state, not waiting for one
      ]);
      await migrate(Infinity);
      // As redis-cli: the target first (so the slot is never without an owner), then the source, then the rest.
      await setslot(to, slot, 'NODE', ids[to]!);
      await setslot(from, slot, 'NODE', ids[to]!);
      for (let i = 0; i < nodes.length; i++) if (i !== to && i !== from) await setslot(i, slot, 'NODE', ids[to]!);
      return { slot, from, to, keys, during, startedAt, endedAt: Date.now() };
    },
    async reshard(from, to, slots, pipeline = 1) {
      await settled();
      const { host, port } = cluster.nodes[from]!;
      const out = await redisCli(
        [
          '--cluster',
          'reshard',
          `${host}:${port}`,
          '--cluster-from',
          ids[from]!,
          '--cluster-to',
          ids[to]!,
          '--cluster-slots',
          String(slots),
          '--cluster-pipeline',
          String(pipeline),
          '--cluster-yes',
        ],
        120_000,
      );
      return [...out.matchAll(/^Moving slot (\d+) from /gm)].map((m) => Number(m[1]));
    },
    close: () => nodes.forEach((n) => n.disconnect()),
  };
}
