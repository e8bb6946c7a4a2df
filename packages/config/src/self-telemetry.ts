/**
 * Whether, and where, the bridge exports its own traces and metrics over OTLP. The standard OTEL_*
 * variables say it, read as `@opentelemetry/sdk-node` reads them (it does the exporting), behind
 * an opt-in of the bridge's own, because the shell a Claude Code user runs `npm start` from
 * usually holds Claude Code's settings: OTEL_EXPORTER_OTLP_ENDPOINT at this very bridge (or at the
 * Collector that feeds it) and OTEL_LOGS_EXPORTER, OTEL_METRICS_EXPORTER (OTEL_TRACES_EXPORTER with
 * its beta tracing) = otlp. Read as the SDK reads them, they would have the bridge send its own
 * telemetry to itself. So:
 *
 *  1. A signal is exported only when its exporter variable names `otlp` (OTEL_TRACES_EXPORTER,
 *     OTEL_METRICS_EXPORTER). Unset means none, not the SDK's default (otlp); and with neither the
 *     SDK is not loaded at all (it costs about 10 MiB per process, more at a worker's peak).
 *  2. In a shell set up for a Claude Code client those switches are set aside, with a warning:
 *     CLAUDE_CODE_ENABLE_TELEMETRY set, or OTEL_LOGS_EXPORTER set to anything but none (the bridge
 *     has no logs to export, so a logs exporter is a client's). An operator who sets OTEL_* for
 *     the bridge alone says OTEL_LOGS_EXPORTER=none, or leaves it unset.
 *  3. An endpoint that is the bridge's own receiver (a local address on OTLP_HTTP_PORT or
 *     OTLP_GRPC_PORT, in a process that runs the ingest) is refused at start-up, the SDK's default
 *     (localhost:4318) included: its own spans would come back to it, a loop.
 *
 * BRIDGE_SELF_TRACES_URL and BRIDGE_METRICS_OTLP_URL, the settings before these, still work: each
 * stands for the OTEL_* values it is mapped onto (OTLP/HTTP JSON to that URL), with a warning.
 * Prometheus /metrics is served in every case; OTEL_METRICS_EXPORTER=prometheus asks for nothing more.
 */
import os from 'node:os';
import { ConfigError } from './error';

export interface SelfTelemetry {
  /** Export the bridge's own traces (receive → enqueue → process → export) over OTLP. */
  traces: boolean;
  /** Push the bridge's own metrics over OTLP too. */
  metrics: boolean;
  /** OTEL_* values that the deprecated BRIDGE_* variables stand for, laid over the environment the SDK reads. */
  env: Record<string, string>;
  /** Where each exported signal goes, for the start-up line. */
  endpoints: { traces?: string; metrics?: string };
  /** To log at start-up: deprecated variables in use, exporter switches set aside. */
  warnings: string[];
}

/** What of the bridge's own configuration decides (its receiver's ports; the deprecated URLs). */
export interface Own {
  role: 'all' | 'ingest' | 'worker';
  otlpHttpPort: number;
  otlpGrpcPort: number;
  selfTracesUrl: string | undefined;
  metricsOtlpUrl: string | undefined;
}

type Signal = 'traces' | 'metrics';
const UPPER: Record<Signal, 'TRACES' | 'METRICS'> = { traces: 'TRACES', metrics: 'METRICS' };
const ALIAS: Record<Signal, 'BRIDGE_SELF_TRACES_URL' | 'BRIDGE_METRICS_OTLP_URL'> = {
  traces: 'BRIDGE_SELF_TRACES_URL',
  metrics: 'BRIDGE_METRICS_OTLP_URL',
};
const aliasOf = (own: Own, signal: Signal) => (signal === 'traces' ? own.selfTracesUrl : own.metricsOtlpUrl);

const PROTOCOLS = ['grpc', 'http/protobuf', 'http/json'];
const SAMPLERS = [
  'always_on',
  'always_off',
  'traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
];

const value = (env: NodeJS.ProcessEnv, name: string) => {
  const v = env[name]?.trim();
  return v === undefined || v === '' ? undefined : v;
};

/** The exporters an OTEL_*_EXPORTER variable names (a comma-separated list). */
const exportersOf = (raw: string | undefined) =>
  (raw ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');

/** Whether a signal's exporter variable names otlp; any value the bridge cannot honour is an error. */
function exporterSwitch(env: NodeJS.ProcessEnv, signal: Signal): boolean {
  const name = `OTEL_${UPPER[signal]}_EXPORTER`;
  const raw = value(env, name);
  if (raw === undefined) return false;
  const allowed = signal === 'traces' ? ['otlp', 'none'] : ['otlp', 'prometheus', 'none'];
  const list = exportersOf(raw);
  if (list.some((s) => !allowed.includes(s)) || (list.includes('none') && list.length > 1)) {
    const also = signal === 'metrics' ? '; Prometheus is served at /metrics whatever this says' : '';
    throw new ConfigError(
      name,
      raw,
      `${allowed.join(', ')} (the bridge exports its own ${signal} over OTLP only; unset means none${also})`,
    );
  }
  return list.includes('otlp');
}

/** Why the OTEL_* exporter switches belong to a Claude Code client in this shell, if they do. */
function clientShell(env: NodeJS.ProcessEnv): string | undefined {
  const claude = value(env, 'CLAUDE_CODE_ENABLE_TELEMETRY');
  if (claude !== undefined && !['0', 'false'].includes(claude.toLowerCase()))
    return `CLAUDE_CODE_ENABLE_TELEMETRY=${claude}`;
  const logs = value(env, 'OTEL_LOGS_EXPORTER');
  if (logs !== undefined && logs.toLowerCase() !== 'none') return `OTEL_LOGS_EXPORTER=${logs}`;
  return undefined;
}

/** The endpoint a signal's OTLP exporter sends to, as the SDK's exporters resolve it, and the variable that gave it. */
function endpointOf(env: NodeJS.ProcessEnv, signal: Signal): { url: string; variable: string; given: boolean } {
  const protocolVariable = value(env, `OTEL_EXPORTER_OTLP_${UPPER[signal]}_PROTOCOL`)
    ? `OTEL_EXPORTER_OTLP_${UPPER[signal]}_PROTOCOL`
    : 'OTEL_EXPORTER_OTLP_PROTOCOL';
  const protocol = value(env, protocolVariable) ?? 'http/protobuf';
  if (!PROTOCOLS.includes(protocol))
    throw new ConfigError(protocolVariable, protocol, `one of ${PROTOCOLS.join(', ')}`);
  const perSignal = `OTEL_EXPORTER_OTLP_${UPPER[signal]}_ENDPOINT`;
  const grpc = protocol === 'grpc';
  const [variable, raw, given] =
    value(env, perSignal) !== undefined
      ? [perSignal, value(env, perSignal)!, true]
      : value(env, 'OTEL_EXPORTER_OTLP_ENDPOINT') !== undefined
        ? ['OTEL_EXPORTER_OTLP_ENDPOINT', value(env, 'OTEL_EXPORTER_OTLP_ENDPOINT')!, true]
        : ['OTEL_EXPORTER_OTLP_ENDPOINT', grpc ? 'http://localhost:4317' : 'http://localhost:4318', false];
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(variable, raw, 'a URL starting with http:// or https://');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new ConfigError(variable, raw, 'a URL starting with http:// or https://');
  // The base endpoint has the signal's path appended over HTTP; a per-signal one is taken whole.
  const full = variable === perSignal || grpc ? raw : `${raw.replace(/\/+$/, '')}/v1/${signal}`;
  return { url: full, variable, given };
}

/** `key=value` pairs separated by commas (the values are not repeated in a message: they may be secrets). */
function checkHeaders(env: NodeJS.ProcessEnv, signal: Signal): void {
  for (const name of ['OTEL_EXPORTER_OTLP_HEADERS', `OTEL_EXPORTER_OTLP_${UPPER[signal]}_HEADERS`]) {
    const raw = value(env, name);
    const pairs = (raw ?? '').split(',').filter((pair) => pair.trim() !== '');
    if (pairs.some((pair) => !/^\s*[^=\s]+\s*=/.test(pair))) {
      throw new ConfigError(name, '(hidden)', 'key=value pairs separated by commas (W3C baggage format)');
    }
  }
}

function checkSampler(env: NodeJS.ProcessEnv): void {
  const sampler = value(env, 'OTEL_TRACES_SAMPLER');
  if (sampler !== undefined && !SAMPLERS.includes(sampler))
    throw new ConfigError('OTEL_TRACES_SAMPLER', sampler, `one of ${SAMPLERS.join(', ')}`);
  const arg = value(env, 'OTEL_TRACES_SAMPLER_ARG');
  if (arg !== undefined && sampler?.endsWith('traceidratio') && !(Number(arg) >= 0 && Number(arg) <= 1)) {
    throw new ConfigError('OTEL_TRACES_SAMPLER_ARG', arg, 'a ratio from 0 to 1');
  }
}

const LOCAL_HOSTS = new Set(['localhost', '127.0.0.1', '0.0.0.0', '[::1]', '[::]', os.hostname().toLowerCase()]);

/** Whether a URL names this bridge's own OTLP receiver (a local address on one of its ports). */
function pointsAtOwnIngest(raw: string, own: Own): boolean {
  const u = new URL(raw);
  const port = Number(u.port || (u.protocol === 'https:' ? 443 : 80));
  const local = LOCAL_HOSTS.has(u.hostname.toLowerCase()) || /^127\./.test(u.hostname);
  return own.role !== 'worker' && local && (port === own.otlpHttpPort || port === own.otlpGrpcPort);
}

const LOOP = "an endpoint other than this bridge's own OTLP receiver (its own telemetry would come back to it, a loop)";

/** Reads the self-telemetry settings; throws ConfigError naming the first bad variable. */
export function selfTelemetryOf(env: NodeJS.ProcessEnv, own: Own): SelfTelemetry {
  const out: SelfTelemetry = { traces: false, metrics: false, env: {}, endpoints: {}, warnings: [] };
  const disabled = value(env, 'OTEL_SDK_DISABLED');
  const client = clientShell(env);
  for (const signal of ['traces', 'metrics'] as const) {
    const u = UPPER[signal];
    const alias = aliasOf(own, signal);
    const switched = value(env, `OTEL_${u}_EXPORTER`);
    if (disabled !== undefined && disabled.toLowerCase() === 'true') {
      if (alias !== undefined || switched !== undefined)
        out.warnings.push(`OTEL_SDK_DISABLED=${disabled}: the bridge's own ${signal} are not exported over OTLP`);
      continue;
    }
    if (alias !== undefined) {
      // An explicit setting of the bridge's own: never a client's, so never set aside.
      if (pointsAtOwnIngest(alias, own)) throw new ConfigError(ALIAS[signal], alias, LOOP);
      if (client === undefined && exporterSwitch(env, signal)) {
        throw new ConfigError(
          ALIAS[signal],
          alias,
          `unset, since OTEL_${u}_EXPORTER is set: it is the deprecated form of OTEL_EXPORTER_OTLP_${u}_ENDPOINT`,
        );
      }
      Object.assign(out.env, {
        [`OTEL_${u}_EXPORTER`]: 'otlp',
        [`OTEL_EXPORTER_OTLP_${u}_ENDPOINT`]: alias,
        [`OTEL_EXPORTER_OTLP_${u}_PROTOCOL`]: 'http/json',
      });
      out.warnings.push(
        `${ALIAS[signal]} is deprecated: set OTEL_${u}_EXPORTER=otlp and OTEL_EXPORTER_OTLP_${u}_ENDPOINT=${alias} instead (it now stands for these, with OTEL_EXPORTER_OTLP_${u}_PROTOCOL=http/json)`,
      );
      out[signal] = true;
      out.endpoints[signal] = alias;
    } else if (client !== undefined) {
      if (exportersOf(switched).includes('otlp')) {
        out.warnings.push(
          `OTEL_${u}_EXPORTER=${switched} is set aside: with ${client} these OTEL_* variables are a Claude Code client's, not the bridge's (it exports no logs). To export the bridge's own ${signal}, run it with OTEL_LOGS_EXPORTER=none and without CLAUDE_CODE_ENABLE_TELEMETRY`,
        );
      }
    } else if (exporterSwitch(env, signal)) {
      const endpoint = endpointOf(env, signal);
      if (pointsAtOwnIngest(endpoint.url, own)) {
        throw endpoint.given
          ? new ConfigError(endpoint.variable, value(env, endpoint.variable)!, LOOP)
          : new ConfigError(
              endpoint.variable,
              '',
              `${LOOP}: unset, the SDK sends to ${endpoint.url}; set it to your Collector or backend`,
            );
      }
      checkHeaders(env, signal);
      if (signal === 'traces') checkSampler(env);
      out[signal] = true;
      out.endpoints[signal] = endpoint.url;
    }
  }
  return out;
}
