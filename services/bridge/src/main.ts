#!/usr/bin/env node
/**
 * The bridge's process: reads the configuration, picks Redis, runs the ingest, the worker or
 * both (BRIDGE_ROLE), serves /metrics, /healthz and /readyz on a port of its own (every role;
 * the ingest's OTLP port serves health too), and shuts down
 * gracefully on SIGTERM/SIGINT: stop taking requests, finish the ones in flight, finish the
 * jobs in hand, then stop. Turns still open stay in Redis; the next worker carries on.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { ConfigError, loadConfig, unknownVariables, type BridgeConfig } from '@ccbridge/config';
import { createLogger, type Logger } from '@ccbridge/log';
import { createAdminApp } from '@ccbridge/ingest/health';
import { startTelemetry } from '@ccbridge/telemetry/sdk';
import { connectRedis } from '@ccbridge/redis';
import { StartupError, chooseRedis } from './redis';

/**
 * Listens on host:port and resolves with the port bound (the system's choice for 0); a port in
 * use is a StartupError naming its variable.
 */
function listen(server: http.Server | https.Server, variable: string, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new StartupError(
          err.code === 'EADDRINUSE'
            ? `${variable}=${port} is already in use on ${host}`
            : `cannot listen on ${host}:${port}: ${err.message}`,
        ),
      ),
    );
    server.listen(port, host, () => resolve((server.address() as AddressInfo).port));
  });
}

function close(server: http.Server | https.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}

/** Writes the ports bound as JSON, whole or not at all (a reader never sees half a file). */
function writePortsFile(file: string, ports: Record<string, number>): void {
  try {
    writeFileSync(`${file}.tmp`, `${JSON.stringify(ports)}\n`);
    renameSync(`${file}.tmp`, file);
  } catch (err) {
    throw new StartupError(`BRIDGE_PORTS_FILE=${file}: cannot write it: ${(err as Error).message}`);
  }
}

const VERSION: string = (
  JSON.parse(readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }
).version;

/**
 * How far V8 lets the heap grow past what a full collection left live: 2×. V8's own factor goes
 * up to 4× while allocation is fast, as a worker's is (about 3 MB a batch over some 22 MiB
 * live), which held 210–235 MiB of peak RSS in `npm run bench`; 2× holds about 50 MiB less for
 * a few percent more CPU (docs/BENCHMARKS.md). A `--heap-growing-percent` given to node wins.
 */
const HEAP_GROWING_PERCENT = 100;

async function run(config: BridgeConfig, log: Logger): Promise<() => Promise<void>> {
  // First: the services' instruments come from the SDK's meter provider.
  const telemetry = await startTelemetry({ role: config.role, version: VERSION, ...config.selfTelemetry });
  for (const warning of config.selfTelemetry.warnings) log.warn(warning);
  const redis = await chooseRedis(config, log);
  const target = { url: redis.url, cluster: config.redisCluster };
  // Each role loads only its own modules: a worker no receiver, an ingest no processing.
  let ingest;
  try {
    ingest =
      config.role !== 'worker'
        ? await (
            await import('@ccbridge/ingest-service')
          ).startIngest(config, target, log.child({ component: 'ingest' }))
        : undefined;
  } catch (err) {
    await redis.stop();
    throw new StartupError((err as Error).message);
  }
  // A process setting, so here and not in the worker's wiring (tests start that in their own process).
  if (config.role !== 'ingest' && !process.execArgv.some((a) => a.startsWith('--heap-growing-percent')))
    setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
  const worker =
    config.role !== 'ingest'
      ? (await import('@ccbridge/worker-service')).startWorker(config, target, log.child({ component: 'worker' }))
      : undefined;
  // Readiness asks one fail-fast connection, not a new one per probe.
  const probe = connectRedis(target, 'producer');
  probe.on('error', () => undefined);
  // The ports bound, by the variable that asked for each: with 0, the system's choice.
  const ports: Record<string, number> = {};
  const health = { ready: async () => (await probe.ping()) === 'PONG', ports: () => ports };
  const admin = http.createServer(createAdminApp(health, (req, res) => telemetry.metricsHandler(req, res)));
  // The OTLP receiver, for the ingest roles only: a worker takes no requests.
  const otlp = ingest?.httpServer(health);
  try {
    ports.metrics = await listen(admin, 'BRIDGE_METRICS_PORT', config.metricsHost, config.metricsPort);
    if (otlp && ingest) {
      ports.otlpHttp = await listen(otlp, 'OTLP_HTTP_PORT', config.otlpHttpHost, config.otlpHttpPort);
      ports.otlpGrpc = ingest.grpcPort;
    }
    if (config.portsFile) writePortsFile(config.portsFile, ports);
  } catch (err) {
    await close(admin);
    await ingest?.close();
    await worker?.close();
    probe.disconnect();
    await redis.stop();
    throw err;
  }
  log.info(
    {
      role: config.role,
      ...(ingest && { port: ports.otlpHttp, grpcPort: ports.otlpGrpc, host: config.otlpHttpHost }),
      metricsPort: ports.metrics,
      redis: redis.url.replace(/\/\/[^@]*@/, '//***@'),
      llmflow: config.llmflowUrl,
      selfTraces: config.selfTelemetry.endpoints.traces ?? 'off',
      selfMetrics: config.selfTelemetry.endpoints.metrics ?? 'off',
      tls: !!config.tlsCertFile,
      auth: config.authTokens.length > 0 ? `${config.authTokens.length} token(s)` : 'off',
    },
    'bridge started',
  );

  return async () => {
    if (otlp) await close(otlp);
    await ingest?.close();
    await worker?.close();
    await close(admin);
    probe.disconnect();
    await redis.stop();
    await telemetry.shutdown().catch(() => undefined);
  };
}

async function main(): Promise<void> {
  let config: BridgeConfig;
  try {
    config = loadConfig();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`claude-code-llmflow-bridge: ${err.message}\n`);
    process.exit(2);
  }
  const log = createLogger(config.logLevel);
  // A signal during start-up is held, then acted on once there is something to stop.
  let requested: string | undefined;
  let onSignal = (signal: string) => {
    requested = signal;
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  const unknown = unknownVariables();
  if (unknown.length > 0)
    log.warn({ variables: unknown }, 'ignoring BRIDGE_* variables that no setting reads (misspelt?)');
  let stop: () => Promise<void>;
  try {
    stop = await run(config, log);
  } catch (err) {
    if (!(err instanceof StartupError)) throw err;
    log.fatal(err.message);
    process.stderr.write(`claude-code-llmflow-bridge: ${err.message}\n`);
    process.exit(1);
  }
  let stopping = false;
  onSignal = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      log.error({ timeoutMs: config.shutdownTimeoutMs }, 'shutdown took too long; exiting');
      process.exit(1);
    }, config.shutdownTimeoutMs);
    force.unref();
    stop().then(
      () => {
        log.info('stopped');
        process.exit(0);
      },
      (err) => {
        log.error({ err: (err as Error).message }, 'error while shutting down');
        process.exit(1);
      },
    );
  };
  if (requested) onSignal(requested);
}

main().catch((err: Error) => {
  process.stderr.write(`claude-code-llmflow-bridge: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
