/**
 * The bridge's configuration, read once from the environment at start-up.
 *
 * Every variable is parsed by one line of the SPEC table below, so the README's configuration
 * table and this file can be checked against each other; the standard OTEL_* variables of the
 * bridge's own telemetry are read in self-telemetry.ts. A bad value stops start-up with a
 * message that names the variable, the value and what was expected (ConfigError).
 */
import { accessSync, constants } from 'node:fs';
import { ConfigError } from './error';
import { selfTelemetryOf, type SelfTelemetry } from './self-telemetry';

export { ConfigError } from './error';
export type { SelfTelemetry } from './self-telemetry';

export type BridgeRole = 'all' | 'ingest' | 'worker';

export interface BridgeConfig {
  role: BridgeRole;
  /** Redis to use; undefined when REDIS_URL is unset (the entry point may then start its own). */
  redisUrl: string | undefined;
  /** REDIS_URL is a node of a Redis Cluster (a seed): connect to the whole cluster. */
  redisCluster: boolean;
  llmflowUrl: string;
  otlpHttpPort: number;
  otlpHttpHost: string;
  otlpGrpcPort: number;
  otlpGrpcHost: string;
  /** Where every role serves /metrics (Prometheus), /healthz and /readyz. */
  metricsPort: number;
  /** Where to write the ports bound, as JSON, once listening (for ports of 0). */
  portsFile?: string;
  metricsHost: string;
  /** Deprecated (BRIDGE_METRICS_OTLP_URL): OTLP/HTTP metrics endpoint for the bridge's own metrics; see selfTelemetry. */
  metricsOtlpUrl: string | undefined;
  /** Deprecated (BRIDGE_SELF_TRACES_URL): OTLP/HTTP traces endpoint for traces of its own work; see selfTelemetry. */
  selfTracesUrl: string | undefined;
  /** Whether and where the bridge exports its own traces and metrics over OTLP (the OTEL_* variables). */
  selfTelemetry: SelfTelemetry;
  /** Bearer tokens the receivers accept (any of them); none: no token is asked for. */
  authTokens: string[];
  /** PEM certificate chain and key for TLS on both receivers; unset: plain text. */
  tlsCertFile: string | undefined;
  tlsKeyFile: string | undefined;
  /** KeyValues one message may carry (a record's attributes, a kvlist's entries). */
  maxAttributes: number;
  /** Bytes one string or bytes value may take. */
  maxValueBytes: number;
  /** Largest request body the receiver takes, after gzip is undone. */
  maxBodyBytes: number;
  /** Requests received at once (HTTP and gRPC together); past it the receiver answers 503. */
  maxConcurrentRequests: number;
  /** Jobs waiting in the queue at which the receiver starts answering 503 (back-pressure). */
  queueMaxWaiting: number;
  /** Bytes the queued batches may take in Redis before the receiver answers 503 (events, spans and metrics together). */
  queueMaxBytes: number;
  /**
   * The metrics' share of queueMaxBytes: queued metrics may take this much, the events and spans
   * the rest, so metrics never take their room. Unset: a sixteenth. Always set after loadConfig.
   */
  queueMetricsMaxBytes: number | undefined;
  /** Forward Claude Code's metrics to LLMFlow's /v1/metrics (queued like events); off: they are validated and acknowledged only. */
  forwardMetrics: boolean;
  /** How long a session must be quiet (no events, no counters) before its events are compared with its counters. */
  sessionSettleMs: number;
  /** Senders without event.sequence or prompt.id (older Claude Code): quiet this long means the turn is over. */
  interactionIdleMs: number;
  /** A turn with no end marker and no event for this long is drawn as incomplete. */
  turnTimeoutMs: number;
  /** How long a turn whose end has arrived waits for events still missing before it is drawn as incomplete. */
  gapWaitMs: number;
  /** A turn ended by a newer process of its session (no end marker of its own) waits this long for its last events. */
  processWaitMs: number;
  workerConcurrency: number;
  exportTimeoutMs: number;
  /** Most spans posted to LLMFlow in one request. */
  exportMaxSpans: number;
  /** Each span's OTLP/JSON is cut to fit in this many bytes before it is sent (its largest values are trimmed). */
  spanMaxBytes: number;
  /** Most spans kept in the dead-letter store (spans LLMFlow refused); past it the oldest go, with a warning. */
  deadLetterMax: number;
  jobAttempts: number;
  shutdownTimeoutMs: number;
  logLevel: LogLevel;
  dataDir: string;
  /** Claude Code's own spans: forward them instead of drawing those interactions from events (prefer), ignore them (events), or both. */
  nativeTraces: 'prefer' | 'events' | 'both';
  /** Events that report no work of their own: folded onto the rows they belong to (fold), or each its own span (each). */
  eventRows: 'fold' | 'each';
  privacyPrompts: PrivacyMode;
  privacyToolDetails: PrivacyMode;
  privacyUserIds: PrivacyMode;
}

export type PrivacyMode = 'keep' | 'hash' | 'drop';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

type Parser<T> = (raw: string, name: string) => T;

const integer =
  (min: number, max: number): Parser<number> =>
  (raw, name) => {
    const n = Number(raw.trim());
    if (!/^\d+$/.test(raw.trim()) || n < min || n > max) {
      throw new ConfigError(name, raw, `a whole number from ${min} to ${max}`);
    }
    return n;
  };

/** A TCP port; 0 asks the system for any free one (the bridge logs the port it got). */
const port: Parser<number> = (raw, name) => {
  if (!/^\s*\d+\s*$/.test(raw) || Number(raw) > 65535)
    throw new ConfigError(name, raw, 'a port from 1 to 65535, or 0 for any free port');
  return Number(raw);
};

const boolean: Parser<boolean> = (raw, name) => {
  const v = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw new ConfigError(name, raw, 'true or false (1/0, yes/no, on/off)');
};

const oneOf =
  <T extends string>(...values: T[]): Parser<T> =>
  (raw, name) => {
    const v = raw.trim().toLowerCase() as T;
    if (!values.includes(v)) throw new ConfigError(name, raw, `one of ${values.join(', ')}`);
    return v;
  };

const url =
  (...protocols: string[]): Parser<string> =>
  (raw, name) => {
    let parsed: URL;
    try {
      parsed = new URL(raw.trim());
    } catch {
      throw new ConfigError(name, raw, `a URL (${protocols.join(' or ')})`);
    }
    if (!protocols.includes(parsed.protocol)) {
      throw new ConfigError(name, raw, `a URL starting with ${protocols.map((p) => p + '//').join(' or ')}`);
    }
    return raw.trim().replace(/\/+$/, '');
  };

const text: Parser<string> = (raw, name) => {
  if (raw.trim() === '') throw new ConfigError(name, raw, 'a non-empty value');
  return raw.trim();
};

/** Bytes, with an optional KiB/MiB suffix: "4194304", "512KiB", "4MiB". */
const bytes: Parser<number> = (raw, name) => {
  const m = /^\s*(\d+)\s*(b|kib|kb|mib|mb)?\s*$/i.exec(raw);
  const unit = { b: 1, kib: 1024, kb: 1024, mib: 1024 * 1024, mb: 1024 * 1024 }[(m?.[2] ?? 'b').toLowerCase()];
  const n = m && unit ? Number(m[1]) * unit : NaN;
  if (!Number.isSafeInteger(n) || n < 1024 || n > 1024 * 1024 * 1024) {
    throw new ConfigError(name, raw, 'a size from 1KiB to 1024MiB, such as 4194304, 512KiB or 16MiB');
  }
  return n;
};

/** Comma-separated bearer tokens, each at least 16 characters a header can carry. */
const tokens: Parser<string[]> = (raw, name) => {
  const list = raw
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '');
  if (list.length === 0 || list.some((t) => !/^[A-Za-z0-9._~+/=-]{16,}$/.test(t))) {
    throw new ConfigError(
      name,
      '(hidden)',
      'tokens of at least 16 characters (letters, digits, . _ ~ + / = -), separated by commas',
    );
  }
  return list;
};

/** A file that exists and can be read. */
const readableFile: Parser<string> = (raw, name) => {
  const file = raw.trim();
  try {
    accessSync(file, constants.R_OK);
  } catch (err) {
    throw new ConfigError(
      name,
      raw,
      `a file this process can read (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`,
    );
  }
  return file;
};

interface Spec<K extends keyof BridgeConfig> {
  env: string;
  key: K;
  parse: Parser<BridgeConfig[K]>;
  default: BridgeConfig[K];
}

const spec = <K extends keyof BridgeConfig>(
  env: string,
  key: K,
  parse: Parser<Exclude<BridgeConfig[K], undefined>>,
  def: BridgeConfig[K],
): Spec<K> => ({ env, key, parse, default: def });

/** Variable, field, parser and default: the one place each setting is defined. */
export const SPEC = [
  spec('BRIDGE_ROLE', 'role', oneOf<BridgeRole>('all', 'ingest', 'worker'), 'all'),
  spec('REDIS_URL', 'redisUrl', url('redis:', 'rediss:'), undefined),
  spec('REDIS_CLUSTER', 'redisCluster', boolean, false),
  spec('LLMFLOW_URL', 'llmflowUrl', url('http:', 'https:'), 'http://127.0.0.1:1337'),
  spec('OTLP_HTTP_PORT', 'otlpHttpPort', port, 4318),
  spec('OTLP_HTTP_HOST', 'otlpHttpHost', text, '0.0.0.0'),
  spec('OTLP_GRPC_PORT', 'otlpGrpcPort', port, 4317),
  spec('OTLP_GRPC_HOST', 'otlpGrpcHost', text, '0.0.0.0'),
  spec('BRIDGE_METRICS_PORT', 'metricsPort', port, 9464),
  spec('BRIDGE_METRICS_HOST', 'metricsHost', text, '0.0.0.0'),
  spec('BRIDGE_METRICS_OTLP_URL', 'metricsOtlpUrl', url('http:', 'https:'), undefined),
  spec('BRIDGE_SELF_TRACES_URL', 'selfTracesUrl', url('http:', 'https:'), undefined),
  spec('BRIDGE_AUTH_TOKENS', 'authTokens', tokens, []),
  spec('BRIDGE_TLS_CERT_FILE', 'tlsCertFile', readableFile, undefined),
  spec('BRIDGE_TLS_KEY_FILE', 'tlsKeyFile', readableFile, undefined),
  spec('BRIDGE_MAX_BODY_BYTES', 'maxBodyBytes', bytes, 16 * 1024 * 1024),
  spec('BRIDGE_MAX_ATTRIBUTES', 'maxAttributes', integer(1, 10_000_000), 4096),
  spec('BRIDGE_MAX_VALUE_BYTES', 'maxValueBytes', bytes, 4 * 1024 * 1024),
  spec('BRIDGE_MAX_CONCURRENT_REQUESTS', 'maxConcurrentRequests', integer(1, 10_000), 32),
  spec('BRIDGE_QUEUE_MAX_WAITING', 'queueMaxWaiting', integer(1, 10_000_000), 10_000),
  spec('BRIDGE_QUEUE_MAX_BYTES', 'queueMaxBytes', bytes, 256 * 1024 * 1024),
  spec('BRIDGE_QUEUE_METRICS_MAX_BYTES', 'queueMetricsMaxBytes', bytes, undefined),
  spec('BRIDGE_FORWARD_METRICS', 'forwardMetrics', boolean, true),
  spec('BRIDGE_SESSION_SETTLE_MS', 'sessionSettleMs', integer(1_000, 86_400_000), 150_000),
  spec('BRIDGE_INTERACTION_IDLE_MS', 'interactionIdleMs', integer(100, 86_400_000), 30_000),
  // Longer than any one tool or request is allowed to run by default (Bash: 10 minutes).
  spec('BRIDGE_TURN_TIMEOUT_MS', 'turnTimeoutMs', integer(1_000, 86_400_000), 3_600_000),
  // A Collector retrying after an outage (the shipped config retries every 30 s at most).
  spec('BRIDGE_GAP_WAIT_MS', 'gapWaitMs', integer(100, 86_400_000), 600_000),
  // Claude Code exports its logs every 5 s (OTEL_LOGS_EXPORT_INTERVAL): an older process's last
  // batch may come that much after a newer process's first, and more through a busy Collector.
  spec('BRIDGE_PROCESS_WAIT_MS', 'processWaitMs', integer(100, 86_400_000), 15_000),
  spec('BRIDGE_WORKER_CONCURRENCY', 'workerConcurrency', integer(1, 256), 4),
  spec('BRIDGE_EXPORT_TIMEOUT_MS', 'exportTimeoutMs', integer(100, 600_000), 10_000),
  spec('BRIDGE_EXPORT_MAX_SPANS', 'exportMaxSpans', integer(1, 100_000), 512),
  spec('BRIDGE_SPAN_MAX_BYTES', 'spanMaxBytes', bytes, 64 * 1024),
  spec('BRIDGE_DEAD_LETTER_MAX', 'deadLetterMax', integer(1, 10_000_000), 10_000),
  spec('BRIDGE_JOB_ATTEMPTS', 'jobAttempts', integer(1, 1000), 12),
  spec('BRIDGE_SHUTDOWN_TIMEOUT_MS', 'shutdownTimeoutMs', integer(100, 600_000), 10_000),
  spec('LOG_LEVEL', 'logLevel', oneOf<LogLevel>('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'), 'info'),
  spec('BRIDGE_DATA_DIR', 'dataDir', text, './data'),
  spec('BRIDGE_PORTS_FILE', 'portsFile', text, undefined),
  spec(
    'BRIDGE_NATIVE_TRACES',
    'nativeTraces',
    oneOf<BridgeConfig['nativeTraces']>('prefer', 'events', 'both'),
    'prefer',
  ),
  spec('BRIDGE_EVENT_ROWS', 'eventRows', oneOf<BridgeConfig['eventRows']>('fold', 'each'), 'fold'),
  spec('BRIDGE_PRIVACY_PROMPTS', 'privacyPrompts', oneOf<PrivacyMode>('keep', 'hash', 'drop'), 'keep'),
  spec('BRIDGE_PRIVACY_TOOL_DETAILS', 'privacyToolDetails', oneOf<PrivacyMode>('keep', 'hash', 'drop'), 'keep'),
  spec('BRIDGE_PRIVACY_USER_IDS', 'privacyUserIds', oneOf<PrivacyMode>('keep', 'hash', 'drop'), 'keep'),
] as const;

/** A setting's default (what an unset variable gives), for code that has no loaded configuration. */
export function defaultOf<K extends keyof BridgeConfig>(key: K): BridgeConfig[K] {
  const s = SPEC.find((x) => x.key === key);
  if (!s) throw new Error(`no setting ${key}`);
  return s.default as BridgeConfig[K];
}

/** Reads the configuration; throws ConfigError naming the first bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): BridgeConfig {
  const config: Record<string, unknown> = {};
  for (const s of SPEC) {
    const raw = env[s.env];
    config[s.key] = raw === undefined || raw === '' ? s.default : s.parse(raw, s.env);
  }
  if (config.redisCluster && !config.redisUrl)
    throw new ConfigError('REDIS_CLUSTER', String(env.REDIS_CLUSTER), 'REDIS_URL set to a node of the cluster as well');
  const typed = config as unknown as BridgeConfig;
  if (!typed.tlsCertFile !== !typed.tlsKeyFile) {
    const [missing, given] = typed.tlsCertFile
      ? ['BRIDGE_TLS_KEY_FILE', 'BRIDGE_TLS_CERT_FILE']
      : ['BRIDGE_TLS_CERT_FILE', 'BRIDGE_TLS_KEY_FILE'];
    throw new ConfigError(missing, '', `a file as well, since ${given} is set (TLS needs both)`);
  }
  typed.selfTelemetry = selfTelemetryOf(env, typed);
  if (typed.queueMetricsMaxBytes === undefined) typed.queueMetricsMaxBytes = Math.floor(typed.queueMaxBytes / 16);
  else if (typed.queueMetricsMaxBytes >= typed.queueMaxBytes) {
    throw new ConfigError(
      'BRIDGE_QUEUE_METRICS_MAX_BYTES',
      String(env.BRIDGE_QUEUE_METRICS_MAX_BYTES),
      `a size below BRIDGE_QUEUE_MAX_BYTES (${typed.queueMaxBytes} bytes): it is the metrics' share of that bound, and the events keep the rest`,
    );
  }
  if (typed.metricsPort === typed.otlpHttpPort && typed.metricsPort !== 0 && typed.role !== 'worker') {
    throw new ConfigError(
      'BRIDGE_METRICS_PORT',
      String(typed.metricsPort),
      `a port other than OTLP_HTTP_PORT (${typed.otlpHttpPort})`,
    );
  }
  return config as unknown as BridgeConfig;
}

/** BRIDGE_* variables that no setting reads: most likely misspelt, worth a warning. */
export function unknownVariables(env: NodeJS.ProcessEnv = process.env): string[] {
  const known = new Set(SPEC.map((s) => s.env));
  return Object.keys(env)
    .filter((k) => k.startsWith('BRIDGE_') && !known.has(k))
    .sort();
}
