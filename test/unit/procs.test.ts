/**
 * The test harness's own rules (test/support/procs.ts), each against real processes: a peer that
 * exits fails a wait at once, a port taken first is a retry, and a file that would hang ends at
 * its time limit, stopping what it started.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { PeerExitedError, freePort, launch, startOnFreePorts, waitFor } from '../support/procs';
import { startRedis } from '../support/peers';

test('a process that exits unasked fails the wait under way at once, with its output', async () => {
  launch(process.execPath, ['-e', 'console.log("giving up"); process.exit(3)'], process.env, { name: 'quitter' });
  // The wait's own time-out is far off: only the exit can end it in time for this test.
  await assert.rejects(
    waitFor('something that never comes', () => false, 600_000),
    (err: Error) => {
      assert.ok(err instanceof PeerExitedError, String(err));
      assert.match(err.message, /quitter .* exited 3 unasked; its output:\ngiving up/);
      return true;
    },
  );
});

test('a process that may exit (a command run to completion) fails no wait', async () => {
  const done = launch(process.execPath, ['-e', 'process.exit(0)'], process.env, { mayExit: true });
  await waitFor('the command to end', () => done.child.exitCode !== null);
  assert.equal(await waitFor('a value', () => 42), 42);
});

test('a peer whose port another process took first is started again on another', async () => {
  const holder = net.createServer();
  await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
  const taken = (holder.address() as net.AddressInfo).port;
  let attempts = 0;
  try {
    const redis = await startOnFreePorts(() => startRedis(attempts++ === 0 ? taken : undefined));
    assert.equal(attempts, 2, 'the first start met the taken port');
    assert.notEqual(redis.port, taken);
    await redis.stop();
  } finally {
    holder.close();
  }
  // Any other failure is no retry.
  let calls = 0;
  await assert.rejects(
    startOnFreePorts(async () => {
      calls += 1;
      throw new Error('redis-server: bad configuration');
    }),
    /bad configuration/,
  );
  assert.equal(calls, 1);
  assert.ok((await freePort()) > 0);
});

test('a test file that would hang ends at its time limit, saying so, and stops what it started', () => {
  const file = path.join(__dirname, '..', 'fixtures', 'harness', 'hangs.test.ts');
  const env: NodeJS.ProcessEnv = { ...process.env, HANGS_LIMIT_MS: '3000' };
  delete env.NODE_TEST_CONTEXT; // a run of its own, not a child of this one
  const run = spawnSync(process.execPath, ['--import', 'tsx', '--test', file], {
    encoding: 'utf8',
    env,
    timeout: 120_000,
  });
  assert.equal(run.error, undefined, 'it ended by itself');
  const output = run.stdout + run.stderr;
  assert.notEqual(run.status, 0, output);
  assert.match(output, /passed its time limit of 3000 ms/);
  const pid = Number(/sleeper pid (\d+)/.exec(output)?.[1]);
  assert.ok(pid > 0, output);
  assert.throws(() => process.kill(pid, 0), /ESRCH/, 'the process the test left is gone');
});
