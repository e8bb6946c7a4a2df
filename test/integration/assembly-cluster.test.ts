/** The assembly and lifecycle tests (test/support/assembly-suite.ts) on a real three-master Redis Cluster. */
import { defineAssemblyTests } from '../support/assembly-suite';
import { startRedisCluster } from '../support/redis-cluster';

defineAssemblyTests('cluster', async () => {
  const cluster = await startRedisCluster();
  return { at: { url: cluster.url, cluster: true }, stop: () => cluster.stop() };
});
