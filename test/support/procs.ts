/**
 * The processes a test file starts, and the rules that keep a run from failing or hanging by
 * chance:
 * - every long-running process is registered when launched; one that exits without being asked
 *   to fails the next `waitFor` at once, with its output, instead of a wait for its time-out;
 * - whatever a failed test launched (a process, or a server in this process registered with
 *   `tracked`) is stopped when it ends, whichever step failed, and everything else once the file's
 *   tests are done (so nothing depends on a test's own `finally` having run);
 * - a failing test prints the output of the bridge processes started so far;
 * - a test file has a time limit (FILE_TIME_LIMIT_MS, 12 minutes by default, or `fileTimeLimit`): past it, the file
 *   prints what is still running, stops it and exits 1, rather than holding the run open;
 * - a peer that picks its port before binding it (redis-server, LLMFlow, the Collector: none can
 *   report a port of 0 back) is started again on other ports when another process took one first.
 * The hooks are installed only under `node --test`, so the bench can use the same launchers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, beforeEach } from 'node:test';

export interface Proc {
  /** What it is, for messages: `bridge`, `redis-server`, ... */
  name: string;
  child: ChildProcess;
  output(): string;
  /** Sends a signal and resolves with the exit code once the process is gone. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface LaunchOptions {
  name?: string;
  cwd?: string;
  /** A process expected to exit by itself (a command run to completion, a start-up meant to fail). */
  mayExit?: boolean;
}

interface Entry {
  proc: Proc;
  /** The test that launched it; undefined for a hook's. */
  owner: unknown;
  stopping: boolean;
  mayExit: boolean;
}

const running = new Set<Entry>();
const entries = new WeakMap<Proc, Entry>();
/** Processes that exited unasked, not yet reported by a `waitFor`. */
const unexpected: Entry[] = [];
/** Every bridge started in this file, for the logs a failing test prints. */
const bridges: Entry[] = [];
let currentTest: unknown;

const TAIL_CHARS = 20_000;
const tail = (text: string) =>
  text.length > TAIL_CHARS ? `[... ${text.length - TAIL_CHARS} characters before]\n${text.slice(-TAIL_CHARS)}` : text;

export class PeerExitedError extends Error {
  override name = 'PeerExitedError';
}

export function launch(command: string, args: string[], env: NodeJS.ProcessEnv, options: LaunchOptions = {}): Proc {
  const child = spawn(command, args, {
    cwd: options.cwd ?? path.join(__dirname, '..', '..'),
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  // A command that is not there is an exit too, not an unhandled error.
  child.once('error', (err) => {
    output += `\n${String(err)}`;
    child.emit('exit', null, null);
  });
  const entry: Entry = {
    proc: {
      name: options.name ?? command.split('/').pop()!,
      child,
      output: () => output,
      async stop(signal = 'SIGTERM') {
        entry.stopping = true;
        if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) child.kill(signal);
        return exited;
      },
    },
    owner: currentTest,
    stopping: false,
    mayExit: options.mayExit ?? false,
  };
  running.add(entry);
  entries.set(entry.proc, entry);
  void exited.then(() => {
    running.delete(entry);
    if (!entry.stopping && !entry.mayExit) unexpected.push(entry);
  });
  return entry.proc;
}

interface Server {
  name: string;
  close: () => Promise<void>;
  owner: unknown;
}
/** Servers in this process (stand-ins, sinks, relays) not yet closed: one left open holds the file open. */
const servers = new Set<Server>();

/**
 * Registers a server the test process runs, to be closed when the test that started it ends
 * (or, started by a hook, once the file's tests are done); returns its close, which may be called
 * earlier, and again.
 */
export function tracked(name: string, close: () => Promise<void>): () => Promise<void> {
  const server: Server = { name, close, owner: currentTest };
  servers.add(server);
  return async () => {
    if (servers.delete(server)) await close();
  };
}

async function closeServers(owner: (s: Server) => boolean): Promise<void> {
  await Promise.all(
    [...servers].filter(owner).map(async (s) => {
      servers.delete(s);
      await s.close();
    }),
  );
}

/**
 * Hands a process a test started over to the file: it outlives the test and is stopped once the
 * file's tests are done (a shared peer a test restarts, for the tests after it).
 */
export function keepForFile<T extends Proc>(proc: T): T {
  const entry = [...running].find((e) => e.proc.child === proc.child);
  if (entry) entry.owner = undefined;
  return proc;
}

/** Marks a process as a bridge: its output is printed when a test fails. */
export function isBridge(proc: Proc): Proc {
  bridges.push(entries.get(proc)!);
  return proc;
}

function exitReport(entry: Entry): string {
  const { child } = entry.proc;
  return `${entry.proc.name} (pid ${child.pid}) exited ${child.exitCode ?? child.signalCode} unasked; its output:\n${tail(entry.proc.output())}`;
}

/** Throws at once when a launched process has exited without being asked to. */
export function checkPeers(): void {
  const gone = unexpected.splice(0);
  if (gone.length > 0) throw new PeerExitedError(gone.map(exitReport).join('\n'));
}

/**
 * Polls until `probe` yields a value (not undefined/false), or fails naming what it waited for;
 * fails at once when a launched process exits unasked, or the probe throws PeerExitedError.
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 30_000,
  pollMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: Error | undefined;
  for (;;) {
    checkPeers();
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      if (err instanceof PeerExitedError) throw err;
      last = err as Error;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/**
 * Waits for a process's start-up: fails at once, with its output, when it exits first; on any
 * failure the process is killed, and its exit is told here rather than again by the next waitFor.
 */
export async function waitForStart<T>(
  proc: Proc,
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 30_000,
): Promise<T> {
  const entry = entries.get(proc)!;
  try {
    return await waitFor(
      what,
      () => {
        const { exitCode, signalCode } = proc.child;
        if (exitCode !== null || signalCode !== null)
          throw new PeerExitedError(
            `${proc.name} exited ${exitCode ?? signalCode} before ${what}; its output:\n${tail(proc.output())}`,
          );
        return probe();
      },
      timeoutMs,
    );
  } catch (err) {
    await proc.stop('SIGKILL');
    const at = unexpected.indexOf(entry);
    if (at >= 0) unexpected.splice(at, 1);
    throw err;
  }
}

/** Whether a start-up failed because another process took a port first. */
const PORT_TAKEN = /EADDRINUSE|address already in use|already in use|port \d+ in use/i;

/**
 * Starts a peer that must be told its ports before it binds them; when another process took one
 * of them in between (the start fails saying so), starts it again on ports chosen afresh.
 */
export async function startOnFreePorts<T>(start: () => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (err) {
      if (attempt >= attempts || !PORT_TAKEN.test(String(err))) throw err;
    }
  }
}

/**
 * A port free at this moment, for a peer that cannot bind port 0 itself; start such a peer
 * through `startOnFreePorts`, since another process may take the port before the peer binds it.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Stops what is still running of `entries`: SIGTERM, then SIGKILL after `graceMs`. */
async function stopAll(entries: Entry[], graceMs = 10_000): Promise<void> {
  await Promise.all(
    entries.map(async (e) => {
      const timer = setTimeout(() => e.proc.child.kill('SIGKILL'), graceMs);
      await e.proc.stop('SIGTERM');
      clearTimeout(timer);
    }),
  );
}

const printed = new Map<Proc, number>();
/**
 * The output not yet printed of the bridges a test (or, by default, any hook or test) started,
 * on stderr: the test runner shows it beside the failure.
 */
function printBridgeLogs(why: string, test?: unknown): void {
  for (const { proc } of bridges.filter((e) => test === undefined || e.owner === test || e.owner === undefined)) {
    const text = proc.output();
    const from = printed.get(proc) ?? 0;
    if (text.length === from) continue;
    printed.set(proc, text.length);
    process.stderr.write(
      `\n--- ${why}: output of ${proc.name} (pid ${proc.child.pid}) ---\n${tail(text.slice(from))}\n--- end of ${proc.name} (pid ${proc.child.pid}) ---\n`,
    );
  }
}

const DEFAULT_FILE_LIMIT_MS = Number(process.env.FILE_TIME_LIMIT_MS ?? 12 * 60_000);
let watchdog: NodeJS.Timeout | undefined;

/** Sets this test file's time limit (from now); the default is FILE_TIME_LIMIT_MS or 12 minutes. */
export function fileTimeLimit(ms: number): void {
  if (watchdog) clearTimeout(watchdog);
  watchdog = setTimeout(() => {
    process.stderr.write(
      `\ntest file ${process.argv[1]} passed its time limit of ${ms} ms; still running: ${[...running].map((e) => `${e.proc.name} (pid ${e.proc.child.pid})`).join(', ') || 'nothing it launched'}\n`,
    );
    printBridgeLogs('time limit');
    for (const e of running) e.proc.child.kill('SIGKILL');
    process.exit(1);
  }, ms);
  // It ends the file only if something else holds it open.
  watchdog.unref();
}

if (process.env.NODE_TEST_CONTEXT) {
  fileTimeLimit(DEFAULT_FILE_LIMIT_MS);
  beforeEach((t) => {
    currentTest = t;
  });
  afterEach(async (t) => {
    currentTest = undefined;
    // `passed` is in Node 20.12+ (its types are older).
    if ((t as { passed?: boolean }).passed !== false) return;
    // A failed test's own clean-up may not have run: what it started is stopped here. (A test
    // that passed stopped what it meant to; the rest, peers it shares, goes with the file.)
    printBridgeLogs(`failed: ${t.name}`, t);
    await Promise.all([stopAll([...running].filter((e) => e.owner === t)), closeServers((s) => s.owner === t)]);
  });
  after(async () => {
    await Promise.all([stopAll([...running]), closeServers(() => true)]);
  });
  // Whatever way the file ends, nothing it launched outlives it: a signal (the runner cancelled,
  // CI stopped) ends it without 'exit' handlers, so it is caught too.
  const killAll = () => {
    for (const e of running) e.proc.child.kill('SIGKILL');
  };
  process.on('exit', killAll);
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.once(signal, () => {
      killAll();
      process.exit(128 + os.constants.signals[signal]);
    });
  }
}
