/**
 * Receive rate against the Collector, in one run, on the same core and the same bodies: the
 * bridge's ingest (`BRIDGE_ROLE=ingest`, into Redis) beside the Collector the tests build, its
 * otlp receiver feeding (a) the debug exporter (its in-memory rate) and (b) an otlphttp exporter
 * with a `file_storage` sending queue (its durable rate, as the bridge is durable). Each target
 * runs pinned to one core (`taskset`), the load generator (this process) and Redis on another.
 * Bodies are realistic Claude Code batches: 100 records of the two-tools capture, each body its
 * own sessions, over OTLP/HTTP as protobuf + gzip and as JSON, and over OTLP/gRPC (gzip).
 *
 * Also: the bytes Redis holds per queued record, against the gzip'd wire bytes.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpuSeconds } from './cpu';
import http from 'node:http';
import path from 'node:path';
import zlib from 'node:zlib';
import { Redis } from 'ioredis';
import { encodeExportRequest, type ExportLogsRequest, type LogRecord } from '@ccbridge/otlp';
import { queueBytesKey } from '@ccbridge/redis';
import { logsOf } from '../support/fixtures';
import { collectorBinary, waitHealthy } from '../support/collector';
import { freePort, launch, startOkSink, startRedis, tempDir, waitFor, type Proc } from '../support/peers';
import { grpcExportClient } from '../support/otlp-grpc';
import * as grpc from '@grpc/grpc-js';

const ROOT = path.join(__dirname, '..', '..');
const RECORDS = 100;
const SECONDS = Number(process.env.BENCH_RECEIVE_SECONDS ?? 4);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);

/** Pins a command to one core when the machine has two or more (and taskset is there). */
function pinned(core: number, command: string, args: string[]): [string, string[]] {
  try {
    execFileSync('taskset', ['-c', String(core), 'true']);
    return ['taskset', ['-c', String(core), command, ...args]];
  } catch {
    return [command, args];
  }
}

/**
 * This process (the load generator) on core 0, the target on core 1; returns what puts this
 * process back on every core it had (children started later inherit its affinity).
 */
function pinSelf(): () => void {
  try {
    const mask = /affinity mask: (\w+)/.exec(
      execFileSync('taskset', ['-p', String(process.pid)], { encoding: 'utf8' }),
    )?.[1];
    execFileSync('taskset', ['-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });
    return () => {
      if (mask) execFileSync('taskset', ['-p', mask, String(process.pid)], { stdio: 'ignore' });
    };
  } catch {
    // one core, or no taskset: the figures are then of a shared machine
    return () => undefined;
  }
}

type Format = 'protobuf+gzip' | 'json' | 'grpc';
interface Body {
  bytes: Buffer;
  contentType: string;
  encoding?: string;
}

function bodies(format: Format, n = 32): Body[] {
  const template = logsOf('protobuf', 'two-tools');
  const base = template.resourceLogs![0]!.scopeLogs![0]!.logRecords!;
  return Array.from({ length: n }, (_, b) => {
    const records: LogRecord[] = [];
    for (let i = 0; records.length < RECORDS; i++) {
      for (const r of base) {
        if (records.length === RECORDS) break;
        records.push({
          ...r,
          attributes: r.attributes!.map((a) =>
            a.key === 'session.id' || a.key === 'prompt.id'
              ? { key: a.key, value: { stringValue: `${a.value!.stringValue}-${b}-${i}` } }
              : a,
          ),
        });
      }
    }
    const request: ExportLogsRequest = {
      resourceLogs: [
        {
          ...template.resourceLogs![0]!,
          scopeLogs: [{ ...template.resourceLogs![0]!.scopeLogs![0]!, logRecords: records }],
        },
      ],
    };
    if (format === 'json') return { bytes: Buffer.from(JSON.stringify(request)), contentType: 'application/json' };
    const protobuf = Buffer.from(encodeExportRequest('logs', request, 'protobuf'));
    // gRPC compresses each message itself (gzip, as the Collector's otlp exporter does).
    if (format === 'grpc') return { bytes: protobuf, contentType: 'application/grpc' };
    return { bytes: zlib.gzipSync(protobuf), contentType: 'application/x-protobuf', encoding: 'gzip' };
  });
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function postOnce(url: URL, body: Body): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method: 'POST',
        agent,
        headers: {
          'content-type': body.contentType,
          ...(body.encoding && { 'content-encoding': body.encoding }),
          'content-length': body.bytes.length,
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(body.bytes);
  });
}

type Send = (body: Body) => Promise<boolean>;

const httpSender = (endpoint: string): Send => {
  const url = new URL('/v1/logs', endpoint);
  return async (body) => (await postOnce(url, body)) === 200;
};

/** One gRPC channel, as an exporter keeps one; messages gzip'd by gRPC. */
function grpcSender(address: string): { send: Send; close: () => void } {
  const client = grpcExportClient(address, 'logs', { gzip: true });
  return {
    send: async (body) => (await client.export(body.bytes)).code === grpc.status.OK,
    close: () => client.close(),
  };
}

interface Load {
  recordsPerSecond: number;
  /** Share of one core the target used while measured: below ~0.95 the load generator, not the target, bound the rate. */
  busy?: number;
  /** Records per second of the target's CPU: its cost, whichever side bound the rate. */
  recordsPerCpuSecond?: number;
  refused: number;
  wireBytes: number;
  records: number;
  takenRecords: number;
}

/** Records/s a target (process `pid`) takes: CONCURRENCY senders for SECONDS (after a one-second warm-up). */
async function load(send: Send, list: Body[], pid: number | undefined): Promise<Load> {
  let ok = 0;
  /** Every record answered 200, warm-up included: what the queue holds. */
  let takenRecords = 0;
  let refused = 0;
  let wireBytes = 0;
  let counting = false;
  let stop = false;
  let i = 0;
  const senders = Array.from({ length: CONCURRENCY }, async () => {
    while (!stop) {
      const body = list[i++ % list.length]!;
      const taken = await send(body);
      if (taken) takenRecords += RECORDS;
      if (!counting) continue;
      if (taken) {
        ok += 1;
        wireBytes += body.bytes.length;
      } else refused += 1;
    }
  });
  await new Promise((r) => setTimeout(r, 1_000));
  counting = true;
  const t0 = performance.now();
  const cpu0 = cpuSeconds(pid);
  await new Promise((r) => setTimeout(r, SECONDS * 1_000));
  counting = false;
  const cpu = (cpuSeconds(pid) ?? NaN) - (cpu0 ?? NaN);
  const seconds = (performance.now() - t0) / 1000;
  stop = true;
  await Promise.all(senders);
  const cpuFigures =
    Number.isFinite(cpu) && cpu > 0
      ? { busy: Math.round((cpu / seconds) * 100) / 100, recordsPerCpuSecond: Math.round((ok * RECORDS) / cpu) }
      : {};
  return {
    recordsPerSecond: Math.round((ok * RECORDS) / seconds),
    ...cpuFigures,
    refused,
    wireBytes,
    records: ok * RECORDS,
    takenRecords,
  };
}

async function startPinnedCollector(
  durable: boolean,
  sinkUrl: string,
): Promise<{ proc: Proc; url: string; grpc: string }> {
  const [httpPort, grpcPort, health] = [await freePort(), await freePort(), await freePort()];
  const dir = tempDir('bench-otelcol');
  const config = path.join(dir, 'config.yaml');
  const exporter = durable
    ? `otlphttp:\n    endpoint: ${sinkUrl}\n    sending_queue:\n      enabled: true\n      storage: file_storage\n      queue_size: 1000000\n      sizer: requests`
    : `debug:\n    verbosity: basic`;
  writeFileSync(
    config,
    [
      'extensions:',
      `  health_check:\n    endpoint: 127.0.0.1:${health}`,
      `  file_storage:\n    directory: ${dir}`,
      'receivers:',
      `  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:${httpPort}\n      grpc:\n        endpoint: 127.0.0.1:${grpcPort}`,
      'exporters:',
      `  ${exporter}`,
      'service:',
      `  extensions: [health_check${durable ? ', file_storage' : ''}]`,
      '  telemetry:\n    metrics:\n      level: none\n    logs:\n      level: warn',
      `  pipelines:\n    logs:\n      receivers: [otlp]\n      exporters: [${durable ? 'otlphttp' : 'debug'}]`,
    ].join('\n'),
  );
  const [command, args] = pinned(1, collectorBinary(), [`--config=${config}`]);
  const proc = launch(command, args, process.env);
  await waitHealthy(proc, health);
  return { proc, url: `http://127.0.0.1:${httpPort}`, grpc: `127.0.0.1:${grpcPort}` };
}

async function startPinnedIngest(redisUrl: string): Promise<{ proc: Proc; url: string; grpc: string }> {
  const [httpPort, grpcPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
  const [command, args] = pinned(1, process.execPath, [path.join(ROOT, 'services', 'bridge', 'dist', 'main.js')]);
  const proc = launch(command, args, {
    PATH: process.env.PATH,
    BRIDGE_ROLE: 'ingest',
    REDIS_URL: redisUrl,
    OTLP_HTTP_HOST: '127.0.0.1',
    OTLP_GRPC_HOST: '127.0.0.1',
    OTLP_HTTP_PORT: String(httpPort),
    OTLP_GRPC_PORT: String(grpcPort),
    BRIDGE_METRICS_HOST: '127.0.0.1',
    BRIDGE_METRICS_PORT: String(metricsPort),
    LOG_LEVEL: 'warn',
    BRIDGE_QUEUE_MAX_WAITING: '10000000',
    BRIDGE_QUEUE_MAX_BYTES: '1024MiB',
  });
  const url = `http://127.0.0.1:${httpPort}`;
  await waitFor('the bridge to be ready', async () => {
    if (proc.child.exitCode !== null) throw new Error(`bridge exited: ${proc.output()}`);
    try {
      return (await fetch(`${url}/readyz`)).ok;
    } catch {
      return false;
    }
  });
  return { proc, url, grpc: `127.0.0.1:${grpcPort}` };
}

/** Loads a target over the format's transport. */
async function loadTarget(target: { proc: Proc; url: string; grpc: string }, format: Format, list: Body[]) {
  const pid = target.proc.child.pid;
  if (format !== 'grpc') return load(httpSender(target.url), list, pid);
  const sender = grpcSender(target.grpc);
  try {
    return await load(sender.send, list, pid);
  } finally {
    sender.close();
  }
}

export interface ReceiveFigures {
  format: Format;
  bridge: number;
  collectorDebug: number;
  collectorDurable: number;
  /** Share of its core each target used: below ~0.95 the load generator bound the rate. */
  busy: { bridge?: number; collectorDebug?: number; collectorDurable?: number };
  /** Records per CPU-second of each target: the cost, whichever side bound the rate. */
  perCpuSecond: { bridge?: number; collectorDebug?: number; collectorDurable?: number };
  /**
   * JSON only: records/s a Node process reaches that does nothing but JSON.parse the bodies (on
   * the load generator's core, between runs): a ceiling for any receiver in Node that reads JSON.
   */
  jsonParseOnly?: number;
  /** Redis bytes per queued record, and the gzip'd wire bytes per record (protobuf+gzip only). */
  redisBytesPerRecord?: number;
  wireBytesPerRecord?: number;
}

/** Records/s of JSON.parse alone over the bodies, for about a second. */
function jsonParseOnly(list: Body[]): number {
  let parsed = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < 1_000) JSON.parse(list[parsed++ % list.length]!.bytes.toString('utf8'));
  return Math.round((parsed * RECORDS) / ((performance.now() - t0) / 1000));
}

export async function measureReceive(): Promise<ReceiveFigures[]> {
  const unpin = pinSelf();
  const sink = await startOkSink();
  const out: ReceiveFigures[] = [];
  try {
    for (const format of ['protobuf+gzip', 'json', 'grpc'] as const) {
      const list = bodies(format);
      const debug = await startPinnedCollector(false, sink.url);
      const collectorDebug = await loadTarget(debug, format, list).finally(() => debug.proc.stop());
      const durable = await startPinnedCollector(true, sink.url);
      const collectorDurable = await loadTarget(durable, format, list).finally(() => durable.proc.stop());
      const redis = await startRedis();
      const client = new Redis(redis.url);
      try {
        const ingest = await startPinnedIngest(redis.url);
        const bridge = await loadTarget(ingest, format, list).finally(() => ingest.proc.stop());
        // Every accepted batch is in the queue (nothing drains it), warm-up ones too; several
        // requests may share a job.
        const queued = Number(await client.get(queueBytesKey()));
        const queuedRecords = bridge.takenRecords;
        const figures: ReceiveFigures = {
          format,
          bridge: bridge.recordsPerSecond,
          collectorDebug: collectorDebug.recordsPerSecond,
          collectorDurable: collectorDurable.recordsPerSecond,
          busy: { bridge: bridge.busy, collectorDebug: collectorDebug.busy, collectorDurable: collectorDurable.busy },
          perCpuSecond: {
            bridge: bridge.recordsPerCpuSecond,
            collectorDebug: collectorDebug.recordsPerCpuSecond,
            collectorDurable: collectorDurable.recordsPerCpuSecond,
          },
        };
        if (format === 'json') figures.jsonParseOnly = jsonParseOnly(list);
        if (format === 'protobuf+gzip') {
          figures.redisBytesPerRecord = Math.round((queued / queuedRecords) * 10) / 10;
          figures.wireBytesPerRecord = Math.round((bridge.wireBytes / bridge.records) * 10) / 10;
        }
        out.push(figures);
      } finally {
        client.disconnect();
        await redis.stop();
      }
    }
  } finally {
    await sink.close();
    agent.destroy();
    unpin();
  }
  return out;
}
