/** The assembly and lifecycle tests (test/support/assembly-suite.ts) on a single redis-server. */
import { defineAssemblyTests } from '../support/assembly-suite';
import { startRedis } from '../support/peers';

defineAssemblyTests('redis', async () => {
  const peer = await startRedis();
  return { at: { url: peer.url }, stop: () => peer.stop() };
});
