/**
 * A real three-master Redis Cluster on loopback ports, for the scale-out tests: the interaction
 * store and the BullMQ queue running against a cluster rather than a single redis-server.
 * Each node is Debian's redis-server in its own temporary directory; redis-cli joins them.
 */
import { once } from 'node:events';
import net from 'node:net';
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
