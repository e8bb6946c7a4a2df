/**
 * Issue 23, item 4: what the worker costs, the baseline commit's (BENCH_BASELINE, 3e660a1 by
 * default, built beside this checkout by baseline.sh) and this checkout's, in the same run, on the
 * same load:
 *
 *   load:    a real Claude Code session (sessions.ts: four `claude -p` processes of one resumed
 *            session: a foreground subagent, a background one, two tools, two parallel
 *            subagents; their metrics at each exit), copied with fresh session and prompt ids
 *            (turns.ts' `distinct`); BENCH_SESSIONS_PER_BATCH copies merged into each request, as
 *            a Collector in front of several users merges them; BENCH_PROMPT_BYTES (0) more
 *            characters in each user_prompt's `prompt`, as a power user's 100 KB prompt; BENCH_WORKER_BATCHES logs
 *            requests (5,000 by default) and the copies' metrics requests, queued by that side's
 *            own ingest into a fresh Redis, one request at a time (one queue job each);
 *   drain:   then that side's worker-only bridge (BRIDGE_ROLE=worker, the default concurrency)
 *            drains the queues into a stub LLMFlow that answers at once and counts spans;
 *   figures: spans per worker CPU-second (/proc utime + stime, from ready to drained); Redis
 *            `INFO commandstats` over the drain: script calls (eval, evalsha, fcall) and all
 *            commands per logs batch; Redis CPU (`INFO cpu`, user + sys) per span; the worker's
 *            peak RSS (VmHWM); the shards each batch touches (shardOf of its sessions); the spans
 *            the stub received and the distinct span ids among them (a span sent again counts once);
 *            the worker's CPU ms per logs batch beside the process stage's floor (floor.ts: this
 *            checkout's code on the same batches in this process, nothing kept, no I/O), and the
 *            new worker's CPU outside that stage (one more drain, its logs records made foreign:
 *            withoutEvents); old over their sum (less the inflating, decoding and telling of
 *            events both do) is the most any design of the stage could give;
 *   scripts: a shorter drain of the first BENCH_MONITOR_BATCHES batches (300) under MONITOR
 *            names each script call (the bridge's .lua files, with the command name its code defines
 *            them under, e.g. batch.lua (ccbridgeBatch), and BullMQ's scripts, by their SHA1),
 *            so the calls per batch can be read per script; MONITOR slows Redis, so nothing else
 *            is measured in that drain.
 *   rounds:  BENCH_WORKER_ROUNDS (1) rounds of old then new; the ratios are the medians of each
 *            round's (a shared machine's pace drifts by a third over minutes here), the sides
 *            shown those of the round with the median distinct-span ratio.
 *   profile: with BENCH_PROFILE=cpu, one more drain of the new side, its worker under V8's
 *            sampling profiler (profile-hook.cjs; the profiler slows it, so nothing else is
 *            measured in that drain): where its CPU goes, by package and by function (profile.ts).
 *            With BENCH_PROFILE=redis (or cpu,redis), one more drain of the MONITOR drain's
 *            batches on each side with Redis's SLOWLOG taking every command's duration: Redis's
 *            own time per logs batch by script (its execution, not the reading and writing of
 *            the commands), and the commands sent on their own as one line.
 *
 * Targets (the issue): spans per CPU-second ≥ 3× the old; script calls per logs batch ≤ 2 per
 * shard touched + 1; Redis CPU µs per span ≤ half the old; peak RSS ≤ 150 MiB over 5,000 batches.
 *
 * In `npm run bench` (BENCH_ONLY=worker-cost runs it alone), or alone:
 *   node --import tsx test/bench/worker-cost.ts
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import {
  decodeExportRequest,
  encodeExportRequest,
  type ExportLogsRequest,
  type ExportMetricsRequest,
} from '@ccbridge/otlp';
import * as thisRedis from '@ccbridge/redis';
import { shardOf } from '@ccbridge/redis';
import { peakRssMiB, post, startBridge, startRedis, waitFor } from '../support/peers';
import { copySession, Rng } from '../support/race';
import { cpuSeconds } from './cpu';
import { stubLlmflow } from './export';
import { PROMPTS, capturedSession } from './sessions';
import { distinct } from './turns';
import { summariseProfile, type ProfileSummary } from './profile';
import { stageFloor } from './floor';

const ROOT = path.join(__dirname, '..', '..');
const BATCHES = Number(process.env.BENCH_WORKER_BATCHES ?? 5000);
const PER_BATCH = Number(process.env.BENCH_SESSIONS_PER_BATCH ?? 2);
const MONITOR_BATCHES = Number(process.env.BENCH_MONITOR_BATCHES ?? 300);
const BASELINE = process.env.BENCH_BASELINE ?? '3e660a1';
const METRICS = process.env.BENCH_METRICS !== '0';
const PROMPT_BYTES = Number(process.env.BENCH_PROMPT_BYTES ?? 0);
/**
 * BENCH_RESUMED (0): instead, one session resumed this many times over: the captured session's
 * processes again and again, each copy with its own prompt, request, tool and agent ids and
 * logged after the one before (a long `claude -p --resume` loop, four processes a copy), one
 * logs request per process, no metrics: what a batch costs once a session has hundreds of turns.
 */
const RESUMED = Number(process.env.BENCH_RESUMED ?? 0);
/**
 * BENCH_LONG_TURN (0): instead, one turn this many times as long: the captured `Do TWO_TOOLS`
 * process, its turn's events again and again under its one prompt.id, numbers going on, each copy
 * with its own request and tool ids and logged after the one before, its final answer (one that
 * called no tool) in the last copy only; one logs request a copy, no metrics: what a batch costs
 * once a turn has thousands of LLM calls.
 */
const LONG_TURN = Number(process.env.BENCH_LONG_TURN ?? 0);
/** Rounds of old then new (BENCH_WORKER_ROUNDS): a shared machine's pace drifts over minutes. */
const ROUNDS = Math.max(1, Number(process.env.BENCH_WORKER_ROUNDS ?? 1));
const PROFILES = new Set((process.env.BENCH_PROFILE ?? '').split(',').filter(Boolean));
if ([...PROFILES].some((p) => !['cpu', 'redis'].includes(p)))
  throw new Error(`BENCH_PROFILE=${process.env.BENCH_PROFILE}: expected cpu, redis or cpu,redis (or unset)`);

const progress = (what: string) => process.stderr.write(`bench: worker cost: ${what}\n`);

/** One request of the load, as posted: its signal, its protobuf body, the shards of its sessions. */
interface Request {
  signal: 'logs' | 'metrics';
  body: Uint8Array;
  shards: number;
}

const sessionIds = (json: string) =>
  new Set([...json.matchAll(/"session\.id","value":\{"stringValue":"([^"]+)"/g)].map((m) => m[1]!));

/**
 * One session resumed `copies` times over (BENCH_RESUMED): each copy with fresh ids wherever they
 * occur (race.ts copySession: a <task-notification> names its agent and call), then the first
 * copy's session id again, and its times after the copy before.
 */
export async function resumedLoad(copies: number): Promise<Request[]> {
  const captured = await capturedSession(progress);
  const logs = captured.requests
    .filter((r) => r.signal === 'logs')
    .map((r) => decodeExportRequest('logs', r.body, 'protobuf'));
  const session = { ...captured, scenario: 'bench', description: '', processes: logs.length, requests: logs };
  const times = logs.flatMap((r) =>
    [...JSON.stringify(r).matchAll(/"timeUnixNano":"(\d+)"/g)].map((m) => Number(BigInt(m[1]!) / 1_000_000n)),
  );
  const shiftMs = Math.max(...times) - Math.min(...times) + 60_000;
  const rng = new Rng(1);
  let first: string | undefined;
  const out: Request[] = [];
  for (let c = 0; c < copies; c++) {
    const copy = copySession(session, c, rng);
    first ??= copy.session;
    for (const request of copy.requests) {
      out.push(logsRequest(laterBy(JSON.stringify(request).replaceAll(copy.session, first), c * shiftMs)));
    }
  }
  progress(`one session resumed ${copies} times: ${out.length} logs requests, one per process`);
  return out;
}

/** A logs request's JSON with every time in it `ms` later: its records' and their event.timestamp. */
function laterBy(json: string, ms: number): string {
  const ns = BigInt(ms) * 1_000_000n;
  return json
    .replace(
      /"(time|observedTime)UnixNano":"(\d+)"/g,
      (_m, f: string, t: string) => `"${f}UnixNano":"${BigInt(t) + ns}"`,
    )
    .replace(
      /"event\.timestamp","value":\{"stringValue":"([^"]+)"/g,
      (_m, iso: string) => `"event.timestamp","value":{"stringValue":"${new Date(Date.parse(iso) + ms).toISOString()}"`,
    );
}

const logsRequest = (json: string): Request => ({
  signal: 'logs',
  body: encodeExportRequest('logs', JSON.parse(json) as ExportLogsRequest, 'protobuf'),
  shards: 1,
});

/** One turn `copies` times as long (BENCH_LONG_TURN). */
export async function longTurnLoad(copies: number): Promise<Request[]> {
  const captured = await capturedSession(progress);
  const logs = captured.requests.filter((r) => r.signal === 'logs');
  // One logs request per process, in the order of PROMPTS (sessions.ts).
  const base = decodeExportRequest('logs', logs[PROMPTS.indexOf('Do TWO_TOOLS')]!.body, 'protobuf');
  const records = base.resourceLogs!.flatMap((rl) => rl.scopeLogs!.flatMap((sl) => sl.logRecords ?? []));
  const field = (r: (typeof records)[number], key: string) =>
    r.attributes?.find((a) => a.key === key)?.value?.stringValue;
  const named = (r: (typeof records)[number], ...names: string[]) => names.includes(field(r, 'event.name') ?? '');
  const calledTools = new Set(
    records.filter((r) => named(r, 'tool_decision', 'tool_result')).map((r) => field(r, 'request_id')),
  );
  if (records.filter((r) => named(r, 'user_prompt')).length !== 1)
    throw new Error('the TWO_TOOLS capture is not one turn');
  const times = records.map((r) => Number(BigInt(String(r.timeUnixNano)) / 1_000_000n));
  const shiftMs = Math.max(...times) - Math.min(...times) + 1_000;
  const out: Request[] = [];
  for (let c = 0; c < copies; c++) {
    const kept = records.filter(
      (r) =>
        (c === 0 || (field(r, 'prompt.id') !== undefined && !named(r, 'user_prompt'))) &&
        (c === copies - 1 || !named(r, 'assistant_response') || calledTools.has(field(r, 'request_id'))),
    );
    const copy = structuredClone(kept);
    for (const a of copy.flatMap((r) => r.attributes ?? [])) {
      const v = a.value!;
      if (a.key === 'event.sequence' && v.intValue !== undefined) v.intValue = String(Number(v.intValue) + c * 1_000);
      if (['request_id', 'tool_use_id', 'message.uuid', 'request_body_id'].includes(a.key) && v.stringValue)
        v.stringValue += `-${c}`;
    }
    const request = { resourceLogs: [{ ...base.resourceLogs![0]!, scopeLogs: [{ logRecords: copy }] }] };
    out.push(logsRequest(laterBy(JSON.stringify(request), c * shiftMs)));
  }
  progress(`one turn ${copies} times as long: ${out.length} logs requests, one per copy`);
  return out;
}

/**
 * `batches` logs requests (and the metrics of their sessions): the captured session's requests in
 * the order Claude Code sent them, each merging `perBatch` copies of the session.
 */
export async function workerLoad(batches: number, perBatch = PER_BATCH, metrics = METRICS): Promise<Request[]> {
  const session = await capturedSession(progress);
  const templates = session.requests
    .filter((r) => metrics || r.signal === 'logs')
    .map((r) => ({ signal: r.signal, request: decodeExportRequest(r.signal, r.body, 'protobuf') }));
  const logsPerCopy = templates.filter((t) => t.signal === 'logs').length;
  const out: Request[] = [];
  let logs = 0;
  for (let group = 0; logs < batches; group++) {
    for (const t of templates) {
      if (t.signal === 'logs' && logs >= batches) break;
      const copies = Array.from(
        { length: perBatch },
        (_, k) => JSON.parse(distinct(t.request, group * perBatch + k)) as ExportLogsRequest & ExportMetricsRequest,
      );
      for (const c of copies) lengthenPrompts(c, PROMPT_BYTES);
      const merged =
        t.signal === 'logs'
          ? { resourceLogs: copies.flatMap((c) => c.resourceLogs ?? []) }
          : { resourceMetrics: copies.flatMap((c) => c.resourceMetrics ?? []) };
      const json = JSON.stringify(merged);
      out.push({
        signal: t.signal,
        body: encodeExportRequest(t.signal, merged, 'protobuf'),
        shards: new Set([...sessionIds(json)].map(shardOf)).size,
      });
      if (t.signal === 'logs') logs += 1;
    }
  }
  progress(
    `${batches} logs requests (${logsPerCopy} per session, ${perBatch} sessions each), ${out.length - batches} metrics requests`,
  );
  return out;
}

/**
 * The load with every logs record made foreign (its event name not Claude Code's): the worker
 * takes, inflates and decodes each batch, runs its timers and serves the metrics jobs as on the
 * load, but plans, keeps and sends nothing. Its CPU per logs batch is the worker's outside the
 * process stage, which any design of that stage runs within.
 */
function withoutEvents(load: Request[]): Request[] {
  return load.map((r) => {
    if (r.signal !== 'logs') return r;
    const request = decodeExportRequest('logs', r.body, 'protobuf');
    for (const rl of request.resourceLogs ?? [])
      for (const sl of rl.scopeLogs ?? [])
        for (const record of sl.logRecords ?? []) {
          if (record.eventName) record.eventName = `not.${record.eventName}`;
          if (record.body?.stringValue) record.body.stringValue = `not.${record.body.stringValue}`;
        }
    return { ...r, body: encodeExportRequest('logs', request, 'protobuf') };
  });
}

/** Each user_prompt's text `bytes` characters longer (none for 0). */
function lengthenPrompts(request: ExportLogsRequest, bytes: number) {
  if (bytes <= 0) return;
  for (const r of (request.resourceLogs ?? [])
    .flatMap((rl) => rl.scopeLogs ?? [])
    .flatMap((sl) => sl.logRecords ?? [])) {
    const attrs = r.attributes ?? [];
    const prompt = attrs.find((a) => a.key === 'prompt')?.value;
    if (attrs.some((a) => a.key === 'event.name' && a.value?.stringValue === 'user_prompt') && prompt?.stringValue)
      prompt.stringValue += ` ${'x'.repeat(bytes)}`;
  }
}

/** Redis's INFO as numbers: `section` → field → value (commandstats: command → calls, usec). */
async function info(redis: Redis, section: 'commandstats' | 'cpu'): Promise<Map<string, Record<string, number>>> {
  const text = await redis.info(section);
  const out = new Map<string, Record<string, number>>();
  for (const line of text.split('\r\n')) {
    const m = /^(\w+):(.*)$/.exec(line);
    if (!m) continue;
    if (section === 'commandstats') {
      const fields = Object.fromEntries(
        m[2]!.split(',').map((kv) => {
          const [k, v] = kv.split('=');
          return [k!, Number(v)];
        }),
      );
      out.set(m[1]!.replace(/^cmdstat_/, ''), fields);
    } else out.set(m[1]!, { value: Number(m[2]) });
  }
  return out;
}

/** The bridge's scripts that serve Claude Code's metrics (their own queue's jobs), not the logs batches. */
const METRICS_SCRIPTS = ['metrics/deltas.lua', 'sessions/ledger-counters.lua'];
const isMetricsScript = (name: string) => METRICS_SCRIPTS.some((s) => name === s || name.startsWith(`${s} (`));

const SCRIPT_COMMANDS = ['eval', 'evalsha', 'eval_ro', 'evalsha_ro', 'fcall', 'fcall_ro'];

type QueueNames = Pick<typeof thisRedis, 'queueKey' | 'NAMESPACE' | 'QUEUE_NAME' | 'METRICS_QUEUE_NAME'>;

/** The queue's key names as a checkout's own code has them (this one's where it has none of these). */
function queueNames(root: string): QueueNames {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const theirs = require(path.join(root, 'packages', 'redis', 'dist', 'index.js')) as Partial<QueueNames>;
    if (theirs.queueKey && theirs.NAMESPACE && theirs.QUEUE_NAME && theirs.METRICS_QUEUE_NAME)
      return theirs as QueueNames;
  } catch {
    /* this checkout's names */
  }
  return thisRedis;
}

/**
 * File → command name of the scripts a package's code defines (`defineScript(redis, 'ccbridgeBatch',
 * LUA, 'batch.lua', 4)`: old ccbridgeApply, ccbridgeClaim, …; new ccbridgeBatch, ccbridgeCommit,
 * ccbridgeDue), so the MONITOR breakdown names both sides' scripts as their code calls them.
 */
function commandNames(src: string): Map<string, string> {
  const out = new Map<string, string>();
  if (!existsSync(src)) return out;
  const walk = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? walk(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : [],
    );
  for (const file of walk(src))
    for (const m of readFileSync(file, 'utf8').matchAll(/defineScript\(\s*\w+,\s*'(\w+)',\s*\w+,\s*'([\w.-]+\.lua)'/g))
      out.set(m[2]!, m[1]!);
  return out;
}

/** SHA1 → name of every Lua script a checkout's bridge may run: its own .lua files and BullMQ's. */
export function scriptNames(root: string): Map<string, string> {
  const names = new Map<string, string>();
  const sha = (lua: string) => createHash('sha1').update(lua).digest('hex');
  // The checkout's own loader (includes put in front), so the SHA is the one it sends; a file as
  // it is where a checkout has no such loader.
  let scriptSource = (dir: string, file: string) => readFileSync(path.join(dir, file), 'utf8');
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const loader = require(path.join(root, 'packages', 'redis', 'dist', 'scripts.js')) as {
      scriptSource?: typeof scriptSource;
    };
    if (loader.scriptSource) scriptSource = loader.scriptSource;
  } catch {
    /* no loader of that name: files as they are */
  }
  for (const pkg of readdirSync(path.join(root, 'packages'))) {
    const dir = path.join(root, 'packages', pkg, 'lua');
    if (!existsSync(dir)) continue;
    const commands = commandNames(path.join(root, 'packages', pkg, 'src'));
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.lua'))) {
      const command = commands.get(file);
      names.set(sha(scriptSource(dir, file)), `${pkg}/${file}${command ? ` (${command})` : ''}`);
    }
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const bullmq = require(require.resolve('bullmq/dist/cjs/scripts', { paths: [root] })) as Record<
    string,
    { name: string; content: string }
  >;
  for (const s of Object.values(bullmq)) names.set(sha(s.content), `bullmq/${s.name}`);
  return names;
}

/** Queues the load through the side's own ingest into a fresh Redis. */
async function queueLoad(root: string, redisUrl: string, load: Request[]): Promise<void> {
  const ingest = await startBridge(
    {
      REDIS_URL: redisUrl,
      LLMFLOW_URL: 'http://127.0.0.1:9',
      LOG_LEVEL: 'warn',
      BRIDGE_QUEUE_MAX_WAITING: String(load.length * 2),
      BRIDGE_ROLE: 'ingest',
    },
    { root },
  );
  try {
    // One at a time: each request its own queue job (requests at once may share one).
    for (const r of load) {
      const res = await post(`${ingest.url}/v1/${r.signal}`, r.body, 'application/x-protobuf');
      if (res.status !== 200) throw new Error(`ingest answered ${res.status} to ${r.signal}`);
    }
  } finally {
    await ingest.stop();
  }
}

export interface SideCost {
  label: string;
  commit: string;
  logsBatches: number;
  metricsRequests: number;
  jobs: number;
  spans: number;
  /** Distinct span ids among the spans sent: a span sent again (the same id) counted once. */
  distinctSpans: number;
  drainSeconds: number;
  workerCpuSeconds: number;
  spansPerCpuSecond: number;
  /** The same per distinct span: what a side costs for the spans LLMFlow ends with, resends left out. */
  distinctSpansPerCpuSecond: number;
  scriptCallsPerBatch: number;
  commandsPerBatch: number;
  /** Calls per logs batch of the commands called most (top level and inside scripts alike). */
  topCommandsPerBatch: Record<string, number>;
  /** Redis's own time (commandstats usec) per span of the commands that took most (scripts include what they call). */
  topUsecPerSpan: Record<string, number>;
  redisCpuSeconds: number;
  redisCpuUsPerSpan: number;
  /** The same per distinct span (a span sent again, with the same id, counted once). */
  redisCpuUsPerDistinctSpan: number;
  /** The script calls' own time in commandstats (µs), per span. */
  scriptUsecPerSpan: number;
  workerPeakRssMiB: number;
  shardsPerBatch: number;
  /** From the MONITOR drain: script calls per logs batch, by script ("(metrics)": serving the metrics' jobs). */
  scriptsPerBatch?: Record<string, number>;
  /** From the MONITOR drain: script calls per logs batch, less those serving the metrics' jobs. */
  logsScriptCallsPerBatch?: number;
  /** With BENCH_PROFILE=redis: Redis's own time (µs) per logs batch, by script (redisTimeByScript). */
  redisUsByScript?: Record<string, number>;
}

/** The side's worker drains what is queued into the stub; resolves once all is drained and the stub quiet. */
async function drain(root: string, redisUrl: string, client: Redis, env: Record<string, string> = {}) {
  const { queueKey, NAMESPACE, QUEUE_NAME, METRICS_QUEUE_NAME } = queueNames(root);
  const stub = await stubLlmflow();
  const worker = await startBridge(
    { REDIS_URL: redisUrl, LLMFLOW_URL: stub.url, LOG_LEVEL: 'warn', BRIDGE_ROLE: 'worker', ...env },
    { root },
  );
  const pid = worker.child.pid!;
  const cpu0 = cpuSeconds(pid) ?? NaN;
  const t0 = performance.now();
  try {
    const waiting = async (queue: string) =>
      (await client.llen(queueKey('wait', NAMESPACE, queue))) +
      (await client.llen(queueKey('active', NAMESPACE, queue))) +
      (await client.zcard(queueKey('prioritized', NAMESPACE, queue)));
    await waitFor(
      'the queues to drain',
      async () => (await waiting(QUEUE_NAME)) + (await waiting(METRICS_QUEUE_NAME)) === 0,
      900_000,
      50,
    );
    // Then quiet: roots and held spans the worker draws on its timers after the last job.
    let last = -1;
    let quietSince = performance.now();
    await waitFor(
      'the stub to be quiet for 2 s',
      () => {
        if (stub.spans() !== last) {
          last = stub.spans();
          quietSince = performance.now();
        }
        return performance.now() - quietSince > 2000;
      },
      300_000,
      50,
    );
    return {
      spans: stub.spans(),
      distinctSpans: stub.distinctSpans(),
      cpu: (cpuSeconds(pid) ?? NaN) - cpu0,
      rss: peakRssMiB(pid),
      // Up to the last span, not the quiet that proves it was the last.
      seconds: (quietSince - t0) / 1000,
    };
  } finally {
    await worker.stop();
    await stub.close();
  }
}

export async function measureSide(label: string, root: string, commit: string, load: Request[]): Promise<SideCost> {
  const logs = load.filter((r) => r.signal === 'logs');
  progress(`${label} (${commit}): queueing ${load.length} requests`);
  const redis = await startRedis();
  const client = new Redis(redis.url);
  try {
    await queueLoad(root, redis.url, load);
    const { queueKey, NAMESPACE, QUEUE_NAME } = queueNames(root);
    const jobs = Number(await client.get(queueKey('id', NAMESPACE, QUEUE_NAME))) || 0;
    await client.config('RESETSTAT');
    const cpuBefore = await info(client, 'cpu');
    progress(`${label}: draining ${logs.length} logs batches (${jobs} jobs)`);
    const d = await drain(root, redis.url, client);
    const stats = await info(client, 'commandstats');
    const cpuAfter = await info(client, 'cpu');
    const redisCpu = ['used_cpu_user', 'used_cpu_sys'].reduce(
      (n, k) => n + (cpuAfter.get(k)!.value! - cpuBefore.get(k)!.value!),
      0,
    );
    const calls = (names: string[]) => names.reduce((n, c) => n + (stats.get(c)?.calls ?? 0), 0);
    const usec = (names: string[]) => names.reduce((n, c) => n + (stats.get(c)?.usec ?? 0), 0);
    // The commands the INFO and LLEN polls of this bench sent are left out of the counts.
    const ours = new Set(['info', 'config', 'llen', 'zcard', 'get', 'ping', 'client', 'hello', 'select']);
    const all = [...stats.keys()].filter((c) => !ours.has(c));
    const perBatch = (n: number) => Math.round((n / logs.length) * 100) / 100;
    const top = all
      .map((c) => [c, calls([c])] as const)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 12);
    return {
      label,
      commit,
      logsBatches: logs.length,
      metricsRequests: load.length - logs.length,
      jobs,
      spans: d.spans,
      distinctSpans: d.distinctSpans,
      drainSeconds: Math.round(d.seconds * 10) / 10,
      workerCpuSeconds: Math.round(d.cpu * 100) / 100,
      spansPerCpuSecond: Math.round(d.spans / d.cpu),
      distinctSpansPerCpuSecond: Math.round(d.distinctSpans / d.cpu),
      scriptCallsPerBatch: perBatch(calls(SCRIPT_COMMANDS)),
      commandsPerBatch: perBatch(calls(all)),
      topCommandsPerBatch: Object.fromEntries(top.map(([c, n]) => [c, perBatch(n)])),
      topUsecPerSpan: Object.fromEntries(
        all
          .map((c) => [c, Math.round((usec([c]) / d.spans) * 10) / 10] as const)
          .sort((a, b) => b[1] - a[1])
          .slice(0, 12),
      ),
      redisCpuSeconds: Math.round(redisCpu * 100) / 100,
      redisCpuUsPerSpan: Math.round((redisCpu * 1e6) / d.spans),
      redisCpuUsPerDistinctSpan: Math.round((redisCpu * 1e6) / d.distinctSpans),
      scriptUsecPerSpan: Math.round(usec(SCRIPT_COMMANDS) / d.spans),
      workerPeakRssMiB: Math.round(d.rss * 10) / 10,
      shardsPerBatch: Math.round((logs.reduce((n, r) => n + r.shards, 0) / logs.length) * 100) / 100,
    };
  } finally {
    client.disconnect();
    await redis.stop();
  }
}

/** Where this checkout's worker spends its CPU over a drain of `load` (BENCH_PROFILE=cpu). */
async function profileOfNew(load: Request[]): Promise<ProfileSummary> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ccbridge-profile-'));
  const redis = await startRedis();
  const client = new Redis(redis.url);
  try {
    await queueLoad(ROOT, redis.url, load);
    const hook = path.join(__dirname, 'profile-hook.cjs');
    await drain(ROOT, redis.url, client, { NODE_OPTIONS: `--require ${hook}`, BENCH_PROFILE_DIR: dir });
  } finally {
    client.disconnect();
    await redis.stop();
  }
  // The worker's own process: the largest profile, should the bridge have started another.
  const [file] = readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => path.join(dir, f))
    .sort((a, b) => statSync(b).size - statSync(a).size);
  if (!file) throw new Error(`BENCH_PROFILE=cpu: the worker wrote no profile into ${dir}`);
  return summariseProfile(file, ROOT);
}

/**
 * A script call's name (args: the command and its arguments, as MONITOR or SLOWLOG show them):
 * its file by its SHA1, "(metrics)" after it when it served the metrics' jobs.
 */
function scriptLabel(names: Map<string, string>, metricsQueue: string, args: string[]): string {
  const command = args[0]!.toLowerCase();
  // EVAL is a script's first call on a connection (ioredis, after NOSCRIPT); its source is not named.
  const name = command.startsWith('evalsha')
    ? (names.get(args[1]!) ?? `unknown ${args[1]!.slice(0, 8)}`)
    : command.startsWith('eval')
      ? "eval (a script's first call)"
      : `function ${args[1]}`;
  // BullMQ's calls for the metrics' queue, and the scripts that handle metrics, are the metrics' work.
  const metricsSide =
    isMetricsScript(name) || (name.startsWith('bullmq/') && args.some((a) => a.includes(`:${metricsQueue}:`)));
  return metricsSide ? `${name} (metrics)` : name;
}

/**
 * Redis's own time (µs) per logs batch, by script, over a drain of `load` with SLOWLOG logging
 * every command (BENCH_PROFILE=redis). A script's time holds the commands it ran; those are
 * logged too, from the client "?:0", and not counted again (logging each adds under half a µs to
 * its script's time here). Commands sent on their own (BullMQ's, the ledger's reads) are one line;
 * the bench's own polls are left out.
 */
async function redisTimeByScript(root: string, load: Request[]): Promise<Record<string, number>> {
  const names = scriptNames(root);
  const { METRICS_QUEUE_NAME } = queueNames(root);
  const logs = load.filter((r) => r.signal === 'logs').length;
  const redis = await startRedis();
  const client = new Redis(redis.url, { connectionName: 'bench' });
  const us = new Map<string, number>();
  const maxLen = 5_000_000;
  try {
    await queueLoad(root, redis.url, load);
    await client.config('SET', 'slowlog-max-len', String(maxLen));
    await client.config('SET', 'slowlog-log-slower-than', '0');
    await client.slowlog('RESET');
    await drain(root, redis.url, client);
    await client.config('SET', 'slowlog-log-slower-than', '-1');
    const entries = (await client.call('SLOWLOG', 'GET', '-1')) as [number, number, number, string[], string, string][];
    if (entries.length >= maxLen) throw new Error(`BENCH_PROFILE=redis: SLOWLOG filled up (${maxLen} entries)`);
    for (const [, , micros, args, from, clientName] of entries) {
      if (from === '?:0' || clientName === 'bench') continue;
      const key = SCRIPT_COMMANDS.includes(args[0]!.toLowerCase())
        ? scriptLabel(names, METRICS_QUEUE_NAME, args)
        : 'commands sent on their own';
      us.set(key, (us.get(key) ?? 0) + micros);
    }
  } finally {
    client.disconnect();
    await redis.stop();
  }
  return Object.fromEntries([...us.entries()].sort((a, b) => b[1] - a[1]).map(([k, n]) => [k, Math.round(n / logs)]));
}

/** Script calls per logs batch, by script, over a drain of `load` watched by MONITOR. */
async function scriptsByName(root: string, load: Request[]): Promise<Record<string, number>> {
  const names = scriptNames(root);
  const { METRICS_QUEUE_NAME } = queueNames(root);
  const logs = load.filter((r) => r.signal === 'logs').length;
  const redis = await startRedis();
  const client = new Redis(redis.url);
  const monitorClient = new Redis(redis.url);
  const counts = new Map<string, number>();
  try {
    await queueLoad(root, redis.url, load);
    const monitor = await monitorClient.monitor();
    monitor.on('monitor', (_time: string, args: string[], source: string) => {
      // Commands a script runs show as from "lua": only the calls themselves are counted.
      if (source === 'lua' || !SCRIPT_COMMANDS.includes(args[0]!.toLowerCase())) return;
      const key = scriptLabel(names, METRICS_QUEUE_NAME, args);
      counts.set(key, (counts.get(key) ?? 0) + 1);
    });
    await drain(root, redis.url, client);
    monitor.disconnect();
  } finally {
    client.disconnect();
    monitorClient.disconnect();
    await redis.stop();
  }
  return Object.fromEntries(
    [...counts.entries()].sort((a, b) => b[1] - a[1]).map(([k, n]) => [k, Math.round((n / logs) * 100) / 100]),
  );
}

/** The baseline commit, built beside this checkout (cached). */
function baseline(): { root: string; commit: string } {
  const out = execFileSync('bash', [path.join(__dirname, 'baseline.sh'), BASELINE], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const root = out.trim().split('\n').pop()!;
  return { root, commit: readFileSync(path.join(root, '.ccbridge-baseline-ready'), 'utf8').trim().slice(0, 7) };
}

function thisCommit(): string {
  try {
    const head = execFileSync('git', ['-C', ROOT, 'rev-parse', '--short=7', 'HEAD'], { encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['-C', ROOT, 'status', '--porcelain', '--untracked-files=no'], {
      encoding: 'utf8',
    }).trim();
    return dirty ? `${head}+changes` : head;
  } catch {
    return 'unknown';
  }
}

const r2 = (x: number) => Math.round(x * 100) / 100;
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** The load the settings ask for: how to make it, how the figures line names it, and how the table does. */
function loadShape(): { load: () => Promise<Request[]>; figures: object; label: string } {
  if (RESUMED > 0)
    return {
      load: () => resumedLoad(RESUMED),
      figures: { resumedSession: RESUMED },
      label: `one session resumed ${RESUMED} times`,
    };
  if (LONG_TURN > 0)
    return {
      load: () => longTurnLoad(LONG_TURN),
      figures: { longTurn: LONG_TURN },
      label: `one turn ${LONG_TURN} times as long`,
    };
  return {
    load: () => workerLoad(BATCHES),
    figures: { sessionsPerBatch: PER_BATCH, metrics: METRICS },
    label: `${PER_BATCH} sessions each`,
  };
}

/** Both sides, then the figures line (JSON) and a table for people (stderr). */
export async function measureWorkerCost() {
  const old = baseline();
  const shape = loadShape();
  const load = await shape.load();
  // Rounds alternate the sides, so that a shared machine slowing down for a while weighs on both
  // alike; the ratios are the medians of each round's, the sides shown those of the median round.
  const rounds: [SideCost, SideCost][] = [];
  for (let r = 0; r < ROUNDS; r++) {
    if (ROUNDS > 1) progress(`round ${r + 1} of ${ROUNDS}`);
    rounds.push([
      await measureSide('old', old.root, old.commit, load),
      await measureSide('new', ROOT, thisCommit(), load),
    ]);
  }
  const ratioOf = (pick: (s: SideCost) => number) => (pair: [SideCost, SideCost]) => pick(pair[1]) / pick(pair[0]);
  const byDistinct = ratioOf((s) => s.distinctSpansPerCpuSecond);
  const [oldSide, newSide] = [...rounds].sort((a, b) => byDistinct(a) - byDistinct(b))[Math.floor((ROUNDS - 1) / 2)]!;
  const medianRatio = (pick: (s: SideCost) => number) => r2(median(rounds.map(ratioOf(pick))));
  progress('the process stage alone (no Redis, queue or network), in this process');
  const floor = await stageFloor(load.filter((r) => r.signal === 'logs').map((r) => r.body));
  const msPerBatch = (s: SideCost) => r2((s.workerCpuSeconds * 1000) / s.logsBatches);
  const idle = await measureSide('new, no Claude Code events', ROOT, thisCommit(), withoutEvents(load));
  if (idle.spans > 0) throw new Error(`the load without Claude Code events still made ${idle.spans} spans`);
  const outside = msPerBatch(idle);
  // The load up to its MONITOR_BATCHES-th logs request, metrics in between included.
  let cutLogs = 0;
  const end = load.findIndex((r) => r.signal === 'logs' && ++cutLogs === MONITOR_BATCHES);
  const cut = end === -1 ? load : load.slice(0, end + 1);
  const cutBatches = cut.filter((r) => r.signal === 'logs').length;
  if (MONITOR_BATCHES > 0) {
    progress(`script calls by name, ${MONITOR_BATCHES} batches under MONITOR, each side`);
    for (const [side, root] of [
      [oldSide, old.root],
      [newSide, ROOT],
    ] as const) {
      side.scriptsPerBatch = await scriptsByName(root, cut);
      side.logsScriptCallsPerBatch = r2(
        Object.entries(side.scriptsPerBatch)
          .filter(([k]) => !k.endsWith('(metrics)'))
          .reduce((n, [, v]) => n + v, 0),
      );
    }
  }
  if (PROFILES.has('redis')) {
    progress(`Redis's time by script, ${cutBatches} batches under SLOWLOG, each side`);
    oldSide.redisUsByScript = await redisTimeByScript(old.root, cut);
    newSide.redisUsByScript = await redisTimeByScript(ROOT, cut);
    const most = (k: string) => Math.max(oldSide.redisUsByScript![k] ?? 0, newSide.redisUsByScript![k] ?? 0);
    const rows = [...new Set([...Object.keys(newSide.redisUsByScript), ...Object.keys(oldSide.redisUsByScript)])].sort(
      (a, b) => most(b) - most(a),
    );
    process.stderr.write(
      [
        `Redis's own time per logs batch, µs (SLOWLOG, ${cutBatches} batches): old, new, script`,
        ...rows.map(
          (k) =>
            `${String(oldSide.redisUsByScript![k] ?? '').padStart(8)}${String(newSide.redisUsByScript![k] ?? '').padStart(8)}  ${k}`,
        ),
      ].join('\n') + '\n',
    );
  }
  let profile: ProfileSummary | undefined;
  if (PROFILES.has('cpu')) {
    progress('new: one more drain, its worker profiled');
    profile = await profileOfNew(load);
    const lines = (entries: [string, number][]) => entries.map(([k, v]) => `  ${String(v).padStart(5)}%  ${k}`);
    process.stderr.write(
      [
        `the new worker's CPU (${profile.busySeconds} s busy; ${profile.file}), by place:`,
        ...lines(Object.entries(profile.byPlace).slice(0, 15)),
        'by function (its own time):',
        ...lines(profile.topFunctions.slice(0, 20)),
      ].join('\n') + '\n',
    );
  }
  const shards = newSide.shardsPerBatch;
  const figuresLogs = load.filter((r) => r.signal === 'logs').length;
  const figures = {
    stage: 'worker cost (issue 23): the baseline and this checkout, the same load, each its own Redis, into a stub',
    load: {
      logsBatches: figuresLogs,
      ...shape.figures,
      promptBytes: PROMPT_BYTES,
      shardsPerBatch: shards,
      claudeCode: (await capturedSession()).claudeCode,
    },
    machine: { cores: os.availableParallelism(), cpu: os.cpus()[0]?.model, node: process.version },
    old: oldSide,
    new: newSide,
    // What no design of the process stage saves: the old worker's CPU per batch over this floor is
    // the most that keeping the state elsewhere (and free) could make of spans per CPU-second.
    floor: {
      ...floor,
      oldMsPerBatch: msPerBatch(oldSide),
      newMsPerBatch: msPerBatch(newSide),
      oldOverFloor: r2(msPerBatch(oldSide) / floor.msPerBatch),
    },
    // The new worker on the load with its records made foreign (withoutEvents): its CPU outside the
    // process stage. With the floor, less what both do (inflating, decoding, telling the events),
    // the least any design of the stage could cost per batch.
    outside: {
      msPerBatch: outside,
      oldOverOutsideAndFloor: r2(msPerBatch(oldSide) / (outside + floor.msPerBatch - floor.sharedMsPerBatch)),
    },
    rounds: rounds.map(([o, n]) => ({
      distinctSpansPerCpuSecond: [o.distinctSpansPerCpuSecond, n.distinctSpansPerCpuSecond],
      redisCpuUsPerSpan: [o.redisCpuUsPerSpan, n.redisCpuUsPerSpan],
      workerPeakRssMiB: [o.workerPeakRssMiB, n.workerPeakRssMiB],
    })),
    ratios: {
      spansPerCpuSecond: medianRatio((s) => s.spansPerCpuSecond),
      distinctSpansPerCpuSecond: medianRatio((s) => s.distinctSpansPerCpuSecond),
      redisCpuUsPerSpan: medianRatio((s) => s.redisCpuUsPerSpan),
      redisCpuUsPerDistinctSpan: medianRatio((s) => s.redisCpuUsPerDistinctSpan),
      commandsPerBatch: medianRatio((s) => s.commandsPerBatch),
    },
    targets: {
      spansPerCpuSecond: '>= 3 × old',
      scriptCallsPerBatch: `<= 2 × shards touched + 1 = ${r2(2 * shards + 1)}`,
      redisCpuUsPerSpan: '<= 0.5 × old',
      workerPeakRssMiB: figuresLogs >= 5000 ? '<= 150' : '<= 150 (over 5,000 batches: this run had fewer)',
    },
  };
  const met = {
    spansPerCpuSecond: figures.ratios.spansPerCpuSecond >= 3,
    scriptCallsPerBatch: newSide.scriptCallsPerBatch <= 2 * shards + 1,
    redisCpuUsPerSpan: figures.ratios.redisCpuUsPerSpan <= 0.5,
    workerPeakRssMiB: newSide.workerPeakRssMiB <= 150,
  };
  const row = (what: string, o: number, n: number, ratio: string, target: string, ok: boolean) =>
    `${what.padEnd(34)}${String(o).padStart(10)}${String(n).padStart(10)}${ratio.padStart(9)}  ${target} ${ok ? 'met' : 'NOT met'}`;
  const table = [
    `worker cost: old ${oldSide.commit} vs new ${newSide.commit}, ${figuresLogs} logs batches, ${shape.label}, ${shards} shards touched per batch`,
    `${''.padEnd(34)}${'old'.padStart(10)}${'new'.padStart(10)}${'new/old'.padStart(9)}  target`,
    row(
      'spans per worker CPU-second',
      oldSide.spansPerCpuSecond,
      newSide.spansPerCpuSecond,
      `${figures.ratios.spansPerCpuSecond}×`,
      '>= 3×',
      met.spansPerCpuSecond,
    ),
    row(
      'script calls per logs batch',
      oldSide.scriptCallsPerBatch,
      newSide.scriptCallsPerBatch,
      '',
      `<= ${r2(2 * shards + 1)}`,
      met.scriptCallsPerBatch,
    ),
    row(
      'Redis CPU µs per span',
      oldSide.redisCpuUsPerSpan,
      newSide.redisCpuUsPerSpan,
      `${figures.ratios.redisCpuUsPerSpan}×`,
      '<= 0.5×',
      met.redisCpuUsPerSpan,
    ),
    row('worker peak RSS, MiB', oldSide.workerPeakRssMiB, newSide.workerPeakRssMiB, '', '<= 150', met.workerPeakRssMiB),
    ...(newSide.logsScriptCallsPerBatch !== undefined
      ? [
          `${'  of which for the logs jobs'.padEnd(34)}${String(oldSide.logsScriptCallsPerBatch).padStart(10)}${String(newSide.logsScriptCallsPerBatch).padStart(10)}           (MONITOR, ${MONITOR_BATCHES} batches)`,
        ]
      : []),
    `${'Redis commands per logs batch'.padEnd(34)}${String(oldSide.commandsPerBatch).padStart(10)}${String(newSide.commandsPerBatch).padStart(10)}${`${figures.ratios.commandsPerBatch}×`.padStart(9)}`,
    `${'spans (into the stub)'.padEnd(34)}${String(oldSide.spans).padStart(10)}${String(newSide.spans).padStart(10)}`,
    `${'  distinct span ids among them'.padEnd(34)}${String(oldSide.distinctSpans).padStart(10)}${String(newSide.distinctSpans).padStart(10)}`,
    `${'distinct spans per CPU-second'.padEnd(34)}${String(oldSide.distinctSpansPerCpuSecond).padStart(10)}${String(newSide.distinctSpansPerCpuSecond).padStart(10)}${`${figures.ratios.distinctSpansPerCpuSecond}×`.padStart(9)}`,
    `${'worker CPU ms per logs batch'.padEnd(34)}${String(msPerBatch(oldSide)).padStart(10)}${String(msPerBatch(newSide)).padStart(10)}`,
    `${'  the process stage alone'.padEnd(34)}${String(floor.msPerBatch).padStart(20)}  (no Redis, queue or network: old/floor ${figures.floor.oldOverFloor}×)`,
    `${'  the worker outside it'.padEnd(34)}${String(outside).padStart(20)}  (no Claude Code events; old/(this + floor - ${floor.sharedMsPerBatch} both do) ${figures.outside.oldOverOutsideAndFloor}×)`,
    `${'Redis CPU µs per distinct span'.padEnd(34)}${String(oldSide.redisCpuUsPerDistinctSpan).padStart(10)}${String(newSide.redisCpuUsPerDistinctSpan).padStart(10)}${`${figures.ratios.redisCpuUsPerDistinctSpan}×`.padStart(9)}`,
  ];
  process.stderr.write(`${table.join('\n')}\n`);
  return { ...figures, met, ...(profile && { profile }) };
}

if (require.main === module) {
  measureWorkerCost().then(
    (line) => console.log(JSON.stringify(line)),
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
}
