/**
 * Real peers for the tests, each started on a free loopback port in a temporary directory and
 * stopped by the test that started it: redis-server, LLMFlow (on Bun, from test/peers) and
 * the bridge itself (its built entry point, as `npm start` runs it).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort, isBridge, launch, startOnFreePorts, tracked, waitForStart, type Proc } from './procs';
import { LLMFLOW_READ_SCRIPT } from './llmflow-db';

export { fileTimeLimit, freePort, launch, waitFor, type Proc } from './procs';

const ROOT = path.join(__dirname, '..', '..');
const PEERS = path.join(ROOT, 'test', 'peers', 'node_modules');
/** The Bun that runs LLMFlow (and reads its SQLite file). */
export const BUN = path.join(PEERS, '.bin', 'bun');

export const tempDir = (prefix: string) => mkdtempSync(path.join(os.tmpdir(), `ccbridge-${prefix}-`));

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

/** A redis-server on a free port (`port` to ask for one, as the private-Redis test does). */
export async function startRedis(port?: number, dir = tempDir('redis')): Promise<RedisPeer> {
  // redis-server takes no port 0 (it means "no TCP"), so its port is chosen before it binds.
  const start = async () => {
    const p = port ?? (await freePort());
    const proc = launch(
      'redis-server',
      ['--port', String(p), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'],
      process.env,
      { name: `redis-server :${p}` },
    );
    await waitForStart(proc, 'redis-server to accept connections', () =>
      proc.output().includes('Ready to accept connections'),
    );
    return { ...proc, url: `redis://127.0.0.1:${p}`, port: p, dir };
  };
  return port === undefined ? startOnFreePorts(start) : start();
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

/** A stored span's attributes, parsed. */
export const attrs = (s: StoredSpan) => JSON.parse(s.attributes) as Record<string, unknown>;

const SPAN_COLUMNS =
  'id, trace_id, parent_id, span_type, span_name, model, prompt_tokens, completion_tokens, duration_ms, timestamp, status, provider, service_name, error, attributes, input, output';

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

/**
 * Runs a query on LLMFlow's SQLite file with Bun's built-in sqlite (Node 20 has none), never
 * holding a lock LLMFlow's writes would fail on (llmflow-db.ts).
 */
export function querySqlite(dbPath: string, sql: string): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(BUN, ['-e', LLMFLOW_READ_SCRIPT], {
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
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion -- reject() takes anything, but prefer-promise-reject-errors needs to see the Error (JSON.parse throws a SyntaxError)
        reject(e as Error);
      }
    });
  });
}

/** An LLMFlow keeping its data in `dataDir` (a fresh one by default: give an earlier one's to restart it). */
export async function startLlmflow(dataDir = tempDir('llmflow')): Promise<LlmflowPeer> {
  // LLMFlow asks get-port for its ports (0: any free one) and announces the one it got; Bun binds
  // it a moment later, so another process may take it first: then it exits, and it starts again.
  const { proc, url } = await startOnFreePorts(async () => {
    const proc = launch(
      BUN,
      ['run', path.join(PEERS, 'llmflow', 'src', 'server.ts')],
      {
        ...process.env,
        DASHBOARD_PORT: '0',
        PROXY_PORT: '0',
        DATA_DIR: dataDir,
        // Offline: skip its start-up fetch of a pricing table and use the bundled one.
        PRICING_URL: 'http://127.0.0.1:9/none',
      },
      { name: 'llmflow' },
    );
    const port = await waitForStart(
      proc,
      'LLMFlow to announce its dashboard',
      () => /Dashboard: http:\/\/localhost:(\d+)/.exec(proc.output())?.[1],
    );
    const url = `http://127.0.0.1:${port}`;
    await waitForStart(proc, 'LLMFlow health', () => httpOk(`${url}/api/health`));
    return { proc, url };
  });
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
      return (await querySqlite(
        path.join(dataDir, 'data.db'),
        'SELECT name, value_int, value_double, attributes FROM metrics',
      )) as { name: string; value_int: number | null; value_double: number | null; attributes: string }[];
    },
    async metricTokens() {
      const res = await fetch(`${url}/api/metrics/tokens`);
      if (!res.ok) throw new Error(`GET /api/metrics/tokens: ${res.status}`);
      const { usage } = (await res.json()) as {
        usage: { model: string | null; token_type: string | null; total_tokens: number | null }[];
      };
      const sums: Record<string, number> = {};
      // Summed over services; rows without a type are other %usage% metrics (cost).
      for (const u of usage)
        if (u.token_type)
          sums[`${u.model} ${u.token_type}`] = (sums[`${u.model} ${u.token_type}`] ?? 0) + (u.total_tokens ?? 0);
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

/**
 * Runs the bridge as `npm start` does (the built entry point), with the given environment. Its
 * ports are 0 unless given: it binds what the system hands it and writes the ports it got to
 * BRIDGE_PORTS_FILE, read here, so no other process can take them first.
 */
export async function startBridge(
  env: Record<string, string>,
  /** root: the checkout whose bridge runs (this one by default; the bench runs another commit's beside it). */
  options: { waitReady?: boolean; root?: string } = {},
): Promise<BridgePeer> {
  const base = { ...process.env };
  // Nothing of the shell the tests run in configures the bridge: its OTEL_* (and a Claude Code
  // user's) variables would decide whether it exports its own telemetry.
  for (const k of Object.keys(base))
    if (/^(BRIDGE_|OTEL_|CLAUDE_CODE_)/.test(k) || k === 'REDIS_URL' || k === 'LLMFLOW_URL') delete base[k];
  const portsFile = env.BRIDGE_PORTS_FILE ?? path.join(tempDir('bridge'), 'ports.json');
  const waitReady = options.waitReady ?? true;
  const proc = isBridge(
    launch(
      process.execPath,
      [path.join(options.root ?? ROOT, 'services', 'bridge', 'dist', 'main.js')],
      {
        ...base,
        OTLP_HTTP_HOST: '127.0.0.1',
        OTLP_GRPC_HOST: '127.0.0.1',
        BRIDGE_METRICS_HOST: '127.0.0.1',
        OTLP_HTTP_PORT: '0',
        OTLP_GRPC_PORT: '0',
        BRIDGE_METRICS_PORT: '0',
        BRIDGE_PORTS_FILE: portsFile,
        LOG_LEVEL: 'debug',
        ...env,
      },
      { name: `bridge (${env.BRIDGE_ROLE ?? 'all'})`, mayExit: !waitReady },
    ),
  );
  if (!waitReady) return { ...proc, url: '', port: 0, grpcPort: 0, adminUrl: '' };
  const ports = await waitForStart(proc, 'the bridge to bind its ports', () => {
    try {
      return JSON.parse(readFileSync(portsFile, 'utf8')) as { otlpHttp?: number; otlpGrpc?: number; metrics: number };
    } catch {
      return undefined;
    }
  });
  const adminUrl = `http://127.0.0.1:${ports.metrics}`;
  await waitForStart(proc, 'the bridge to be ready', () => httpOk(`${adminUrl}/readyz`));
  return {
    ...proc,
    url: `http://127.0.0.1:${ports.otlpHttp ?? 0}`,
    port: ports.otlpHttp ?? 0,
    grpcPort: ports.otlpGrpc ?? 0,
    adminUrl,
  };
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
  await new Promise<void>((r) => server.listen(0, host, r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: tracked('OK sink', () => new Promise((r) => server.close(() => r()))),
  };
}
