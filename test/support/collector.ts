/**
 * The real OpenTelemetry Collector, built from the official modules by test/collector/build.sh
 * (cached per machine) and run with the shipped otel-collector.yaml, its ports moved to free
 * loopback ones with --set.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { freePort, launch, tempDir, type Proc } from './peers';
import { startOnFreePorts, waitForStart } from './procs';

const ROOT = path.join(__dirname, '..', '..');
export const SHIPPED_CONFIG = path.join(ROOT, 'otel-collector.yaml');
export const SECOND_CONFIG = path.join(ROOT, 'otel-collector.second.yaml');

let binary: string | undefined;

/** The Collector binary (builds it on first use on this machine). */
export function collectorBinary(): string {
  binary ??= execFileSync('bash', [path.join(ROOT, 'test', 'collector', 'build.sh')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  })
    .trim()
    .split('\n')
    .pop()!;
  return binary;
}

/** Waits for a Collector's health_check extension to answer on `port`; fails at once if it exits. */
export async function waitHealthy(proc: Proc, port: number): Promise<void> {
  await waitForStart(proc, 'the Collector to report healthy', async () => {
    try {
      return (await fetch(`http://127.0.0.1:${port}/`)).ok;
    } catch {
      return false;
    }
  });
}

export interface CollectorPeer extends Proc {
  httpUrl: string;
  grpcAddress: string;
  prometheusUrl: string;
}

/**
 * The Collector takes its ports from its configuration and cannot report a port of 0 back, so
 * they are chosen before it binds them; when another process took one first, it starts again.
 */
export function startCollector(options: {
  bridgeUrl: string;
  configs?: string[];
  env?: Record<string, string>;
  queueDir?: string;
}): Promise<CollectorPeer> {
  return startOnFreePorts(() => startCollectorOnce(options));
}

async function startCollectorOnce(options: {
  bridgeUrl: string;
  configs?: string[];
  env?: Record<string, string>;
  queueDir?: string;
}): Promise<CollectorPeer> {
  const [http, grpc, health, prom] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const configs = options.configs ?? [SHIPPED_CONFIG];
  const args = [
    ...configs.map((c) => `--config=${c}`),
    `--set=receivers.otlp.protocols.http.endpoint=127.0.0.1:${http}`,
    `--set=receivers.otlp.protocols.grpc.endpoint=127.0.0.1:${grpc}`,
    `--set=extensions.health_check.endpoint=127.0.0.1:${health}`,
    // Its own metrics server would take 127.0.0.1:8888 in every test run.
    '--set=service.telemetry.metrics.level=none',
  ];
  const proc = launch(
    collectorBinary(),
    args,
    {
      ...process.env,
      BRIDGE_OTLP_ENDPOINT: options.bridgeUrl,
      OTELCOL_QUEUE_DIR: options.queueDir ?? tempDir('otelcol-queue'),
      PROMETHEUS_ENDPOINT: `127.0.0.1:${prom}`,
      ...options.env,
    },
    { name: 'otelcol' },
  );
  await waitHealthy(proc, health);
  return {
    ...proc,
    httpUrl: `http://127.0.0.1:${http}`,
    grpcAddress: `127.0.0.1:${grpc}`,
    prometheusUrl: `http://127.0.0.1:${prom}/metrics`,
  };
}

/** `otelcol validate` on configuration files; resolves with its exit code and output. */
export function validateConfig(configs: string[], env: Record<string, string> = {}): { code: number; output: string } {
  try {
    const output = execFileSync(collectorBinary(), ['validate', ...configs.map((c) => `--config=${c}`)], {
      env: { ...process.env, ...env },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return { code: 0, output };
  } catch (err) {
    const e = err as { status: number; stdout?: string; stderr?: string };
    return { code: e.status, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}
