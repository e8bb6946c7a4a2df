/**
 * Real peers for the tests, each started on a free loopback port in a temporary directory and
 * stopped by the test that started it: redis-server, LLMFlow (on Bun, from test/peers) and
 * the bridge itself (its built entry point, as `npm start` runs it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.join(__dirname, '..', '..');
const PEERS = path.join(ROOT, 'test', 'peers', 'node_modules');

export const tempDir = (prefix: string) => mkdtempSync(path.join(os.tmpdir(), `ccbridge-${prefix}-`));

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

/** Polls until `probe` yields a value (not undefined/false), or fails naming what it waited for. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 30_000, pollMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

export interface Proc {
  child: ChildProcess;
  output(): string;
  /** Sends a signal and resolves with the exit code once the process is gone. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export function launch(command: string, args: string[], env: NodeJS.ProcessEnv, cwd = ROOT): Proc {
  const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    output: () => output,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

async function httpOk(url: string): Promise<boolean> {
  try {
    return (await fetch(url, { signal: AbortSignal.timeout(1_000) })).ok;
  } catch {
    return false;
  }
}

export interface RedisPeer extends Proc {
  url: string;
  port: number;
  dir: string;
}

export async function startRedis(port?: number, dir = tempDir('redis')): Promise<RedisPeer> {
  const p = port ?? (await freePort());
  const proc = launch('redis-server', ['--port', String(p), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'], process.env);
  await waitFor('redis-server to accept connections', () => proc.output().includes('Ready to accept connections') || (proc.child.exitCode !== null ? Promise.reject(new Error(proc.output())) : false));
  return { ...proc, url: `redis://127.0.0.1:${p}`, port: p, dir };
}

/** A span as LLMFlow's GET /api/traces lists it. */
export interface StoredSpan {
  id: string;
  trace_id: string;
  parent_id: string | null;
  span_type: string;
  span_name: string;
  model: string | null;
  prompt_tokens: number;
  completion_tokens: number;
  duration_ms: number | null;
  timestamp: number;
  status: number;
  provider: string | null;
  service_name: string | null;
  error: string | null;
  /** JSON text, as LLMFlow stores them. */
  attributes: string;
  input: string | null;
  output: string | null;
}

const SPAN_COLUMNS = 'id, trace_id, parent_id, span_type, span_name, model, prompt_tokens, completion_tokens, duration_ms, timestamp, status, provider, service_name, error, attributes, input, output';

export interface LlmflowPeer extends Proc {
  url: string;
  dataDir: string;
  /** Every span LLMFlow stored, read from its SQLite file ($DATA_DIR/data.db, table traces). */
  spans(): Promise<StoredSpan[]>;
  /** GET /api/traces: what LLMFlow's own API lists. */
  listed(): Promise<{ id: string; trace_id: string; parent_id: string | null }[]>;
  /** GET /api/metrics/tokens: the tokens LLMFlow sums from the metrics it stored, as `model type` → tokens. */
  metricTokens(): Promise<Record<string, number>>;
  /** Every metric point LLMFlow stored, read from its SQLite file (table metrics); attributes as JSON text. */
  metricRows(): Promise<{ name: string; value_int: number | null; value_double: number | null; attributes: string }[]>;
}

/** Runs a query on LLMFlow's SQLite file with Bun's built-in sqlite (Node 20 has none). */
function querySqlite(dbPath: string, sql: string): Promise<unknown[]> {
  const script = `import { Database } from 'bun:sqlite';
const db = new Database(process.env.LLMFLOW_DB, { readonly: true });
db.exec('PRAGMA busy_timeout = 5000');
process.stdout.write(JSON.stringify(db.query(process.env.LLMFLOW_SQL).all()));`;
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(PEERS, '.bin', 'bun'), ['-e', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LLMFLOW_DB: dbPath, LLMFLOW_SQL: sql },
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    // 'close', not 'exit': the whole of stdout has been read.
    child.once('close', (code) => {
      if (code !== 0) return reject(new Error(`sqlite query failed: ${err}`));
      try {
        resolve(JSON.parse(out) as unknown[]);
      } catch (e) {
        reject(e as Error);
      }
    });
  });
}

/** An LLMFlow on `wantPort` (a free one by default), keeping its data in `dataDir` (a fresh one by default: give an earlier one's to restart it). */
export async function startLlmflow(wantPort?: number, dataDir = tempDir('llmflow')): Promise<LlmflowPeer> {
  const [dashboard, proxy] = [wantPort ?? (await freePort()), await freePort()];
  const proc = launch(path.join(PEERS, '.bin', 'bun'), ['run', path.join(PEERS, 'llmflow', 'src', 'server.ts')], {
    ...process.env,
    DASHBOARD_PORT: String(dashboard),
    PROXY_PORT: String(proxy),
    DATA_DIR: dataDir,
    // Offline: skip its start-up fetch of a pricing table and use the bundled one.
    PRICING_URL: 'http://127.0.0.1:9/none',
  });
  // LLMFlow takes another port when its own is busy; read the one it announces.
  const port = await waitFor('LLMFlow to announce its dashboard', () => {
    if (proc.child.exitCode !== null) throw new Error(`LLMFlow exited: ${proc.output()}`);
    return /Dashboard: http:\/\/localhost:(\d+)/.exec(proc.output())?.[1];
  });
  const url = `http://127.0.0.1:${port}`;
  await waitFor('LLMFlow health', () => httpOk(`${url}/api/health`));
  return {
    ...proc,
    url,
    dataDir,
    async spans() {
      return (await querySqlite(path.join(dataDir, 'data.db'), `SELECT ${SPAN_COLUMNS} FROM traces`)) as StoredSpan[];
    },
    async listed() {
      const res = await fetch(`${url}/api/traces?limit=100000`);
      if (!res.ok) throw new Error(`GET /api/traces: ${res.status}`);
      return (await res.json()) as { id: string; trace_id: string; parent_id: string | null }[];
    },
    async metricRows() {
      return (await querySqlite(path.join(dataDir, 'data.db'), 'SELECT name, value_int, value_double, attributes FROM metrics')) as { name: string; value_int: number | null; value_double: number | null; attributes: string }[];
    },
    async metricTokens() {
      const res = await fetch(`${url}/api/metrics/tokens`);
      if (!res.ok) throw new Error(`GET /api/metrics/tokens: ${res.status}`);
      const { usage } = (await res.json()) as { usage: { model: string | null; token_type: string | null; total_tokens: number | null }[] };
      const sums: Record<string, number> = {};
      // Summed over services; rows without a type are other %usage% metrics (cost).
      for (const u of usage) if (u.token_type) sums[`${u.model} ${u.token_type}`] = (sums[`${u.model} ${u.token_type}`] ?? 0) + (u.total_tokens ?? 0);
      return sums;
    },
  };
}

export interface BridgePeer extends Proc {
  /** The OTLP/HTTP receiver (ingest roles). */
  url: string;
  port: number;
  grpcPort: number;
  /** Where every role serves /metrics, /healthz and /readyz. */
  adminUrl: string;
}

/** Runs the bridge as `npm start` does (the built entry point), with the given environment. */
export async function startBridge(env: Record<string, string>, options: { waitReady?: boolean } = {}): Promise<BridgePeer> {
  const port = env.OTLP_HTTP_PORT ? Number(env.OTLP_HTTP_PORT) : await freePort();
  const grpcPort = env.OTLP_GRPC_PORT ? Number(env.OTLP_GRPC_PORT) : await freePort();
  const metricsPort = env.BRIDGE_METRICS_PORT ? Number(env.BRIDGE_METRICS_PORT) : await freePort();
  const base = { ...process.env };
  for (const k of Object.keys(base)) if (k.startsWith('BRIDGE_') || k === 'REDIS_URL' || k === 'LLMFLOW_URL') delete base[k];
  const proc = launch(process.execPath, [path.join(ROOT, 'services', 'bridge', 'dist', 'main.js')], {
    ...base,
    OTLP_HTTP_HOST: '127.0.0.1',
    OTLP_GRPC_HOST: '127.0.0.1',
    LOG_LEVEL: 'debug',
    ...env,
    OTLP_HTTP_PORT: String(port),
    OTLP_GRPC_PORT: String(grpcPort),
    BRIDGE_METRICS_HOST: env.BRIDGE_METRICS_HOST ?? '127.0.0.1',
    BRIDGE_METRICS_PORT: String(metricsPort),
  });
  const url = `http://127.0.0.1:${port}`;
  const adminUrl = `http://127.0.0.1:${metricsPort}`;
  if (options.waitReady ?? true) {
    await waitFor('the bridge to be ready', () => {
      if (proc.child.exitCode !== null) throw new Error(`bridge exited ${proc.child.exitCode}: ${proc.output()}`);
      return httpOk(`${adminUrl}/readyz`);
    });
  }
  return { ...proc, url, port, grpcPort, adminUrl };
}

export async function post(url: string, body: Uint8Array, contentType: string, headers: Record<string, string> = {}) {
  const res = await fetch(url, { method: 'POST', body, headers: { 'content-type': contentType, ...headers } });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

/** Peak resident memory of a process (VmHWM), in MiB. */
export function peakRssMiB(pid: number | undefined): number {
  return Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
}

/** An OTLP endpoint that answers every request 200 at once (where an exporter sends, in a test). */
export async function startOkSink(host = '127.0.0.1'): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, host, r));
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((r) => server.close(() => r())) };
}
