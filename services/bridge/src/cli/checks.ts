/**
 * `ccbridge doctor`'s checks of the shell's Claude Code settings: what Claude Code reads to send
 * its events, and the mistakes that leave LLMFlow empty. Pure (environment in, findings out).
 *
 * | check        | wrong when                                                        |
 * |--------------|-------------------------------------------------------------------|
 * | telemetry    | CLAUDE_CODE_ENABLE_TELEMETRY is not 1: Claude Code sends nothing  |
 * | logs         | OTEL_LOGS_EXPORTER does not name otlp: no events (metrics only)   |
 * | protocol     | the protocol is none of grpc, http/protobuf, http/json            |
 * | endpoint     | no endpoint for logs, or not an http(s) URL                       |
 * | port         | gRPC sent to 4318 (the OTLP/HTTP port), or HTTP to 4317 (gRPC)    |
 * | path         | OTEL_EXPORTER_OTLP_ENDPOINT has a path (the SDK adds /v1/logs to it), |
 * |              | or an HTTP OTEL_EXPORTER_OTLP_LOGS_ENDPOINT lacks /v1/logs         |
 * | prompts      | (advice) OTEL_LOG_USER_PROMPTS is not 1: no prompt text, and      |
 * |              | background subagents cannot be placed under their Agent call      |
 * | interval     | (advice) OTEL_LOGS_EXPORT_INTERVAL above 5 s: roots come that late |
 */

export type Severity = 'ok' | 'error' | 'advice';

export interface Finding {
  check: string;
  severity: Severity;
  message: string;
  /** What to set, when something is wrong. */
  fix?: string;
}

export type Protocol = 'grpc' | 'http/protobuf' | 'http/json';

/** Where and how Claude Code would send its logs, read as its OpenTelemetry SDK reads it. */
export interface LogsTarget {
  protocol: Protocol;
  /** The URL requests go to: the base endpoint plus /v1/logs for HTTP, the host:port for gRPC. */
  url: string;
}

const PROTOCOLS: Protocol[] = ['grpc', 'http/protobuf', 'http/json'];

/** The logs protocol and URL the environment gives Claude Code, or undefined when it gives none. */
export function logsTarget(env: NodeJS.ProcessEnv): LogsTarget | undefined {
  const protocol = (env.OTEL_EXPORTER_OTLP_LOGS_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL ?? 'grpc') as Protocol;
  const specific = env.OTEL_EXPORTER_OTLP_LOGS_ENDPOINT;
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT;
  if (!PROTOCOLS.includes(protocol)) return undefined;
  if (specific) return { protocol, url: specific };
  if (!base) return undefined;
  return { protocol, url: protocol === 'grpc' ? base : `${base.replace(/\/+$/, '')}/v1/logs` };
}

function parse(url: string): URL | undefined {
  try {
    const u = new URL(url);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u : undefined;
  } catch {
    return undefined;
  }
}

export function checkClaudeCodeEnv(env: NodeJS.ProcessEnv): Finding[] {
  const out: Finding[] = [];
  const ok = (check: string, message: string) => out.push({ check, severity: 'ok', message });
  const error = (check: string, message: string, fix: string) => out.push({ check, severity: 'error', message, fix });
  const advice = (check: string, message: string, fix: string) => out.push({ check, severity: 'advice', message, fix });

  if (env.CLAUDE_CODE_ENABLE_TELEMETRY === '1')
    ok('telemetry', 'CLAUDE_CODE_ENABLE_TELEMETRY=1: Claude Code sends telemetry');
  else
    error(
      'telemetry',
      `CLAUDE_CODE_ENABLE_TELEMETRY is ${env.CLAUDE_CODE_ENABLE_TELEMETRY === undefined ? 'not set' : JSON.stringify(env.CLAUDE_CODE_ENABLE_TELEMETRY)}: Claude Code sends nothing`,
      'export CLAUDE_CODE_ENABLE_TELEMETRY=1',
    );

  const exporters = (env.OTEL_LOGS_EXPORTER ?? '').split(',').map((s) => s.trim());
  if (exporters.includes('otlp')) ok('logs', 'OTEL_LOGS_EXPORTER includes otlp: events are sent');
  else
    error(
      'logs',
      `OTEL_LOGS_EXPORTER is ${env.OTEL_LOGS_EXPORTER === undefined ? 'not set' : JSON.stringify(env.OTEL_LOGS_EXPORTER)}: Claude Code's events (what the bridge draws from) are not sent, metrics at most`,
      'export OTEL_LOGS_EXPORTER=otlp',
    );

  const protocolVar =
    env.OTEL_EXPORTER_OTLP_LOGS_PROTOCOL !== undefined
      ? 'OTEL_EXPORTER_OTLP_LOGS_PROTOCOL'
      : 'OTEL_EXPORTER_OTLP_PROTOCOL';
  const protocol = env[protocolVar] ?? 'grpc';
  if (!PROTOCOLS.includes(protocol as Protocol)) {
    error(
      'protocol',
      `${protocolVar}=${JSON.stringify(protocol)} is not a protocol Claude Code speaks`,
      `export ${protocolVar}=http/protobuf   (or grpc, or http/json)`,
    );
    return out;
  }
  ok('protocol', `logs go over ${protocol}${env[protocolVar] === undefined ? ' (the default)' : ''}`);

  const endpointVar = env.OTEL_EXPORTER_OTLP_LOGS_ENDPOINT
    ? 'OTEL_EXPORTER_OTLP_LOGS_ENDPOINT'
    : 'OTEL_EXPORTER_OTLP_ENDPOINT';
  const raw = env[endpointVar];
  const defaultPort = protocol === 'grpc' ? 4317 : 4318;
  if (!raw) {
    error(
      'endpoint',
      'neither OTEL_EXPORTER_OTLP_ENDPOINT nor OTEL_EXPORTER_OTLP_LOGS_ENDPOINT is set',
      `export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:${defaultPort}   (the Collector, or the bridge)`,
    );
    return out;
  }
  const url = parse(raw);
  if (!url) {
    error(
      'endpoint',
      `${endpointVar}=${JSON.stringify(raw)} is not an http:// or https:// URL`,
      `export ${endpointVar}=http://127.0.0.1:${defaultPort}`,
    );
    return out;
  }
  ok('endpoint', `${endpointVar}=${raw}`);

  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
  if (protocol === 'grpc' && port === 4318) {
    error(
      'port',
      `gRPC is sent to port 4318, the OTLP/HTTP port: nothing there speaks gRPC`,
      `export ${endpointVar}=${url.protocol}//${url.hostname}:4317   (or OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf)`,
    );
  } else if (protocol !== 'grpc' && port === 4317) {
    error(
      'port',
      `${protocol} is sent to port 4317, the OTLP/gRPC port: nothing there speaks HTTP`,
      `export ${endpointVar}=${url.protocol}//${url.hostname}:4318   (or OTEL_EXPORTER_OTLP_PROTOCOL=grpc)`,
    );
  } else ok('port', `port ${port} takes ${protocol === 'grpc' ? 'gRPC' : 'OTLP/HTTP'}`);

  const path = url.pathname.replace(/\/+$/, '');
  if (protocol !== 'grpc' && endpointVar === 'OTEL_EXPORTER_OTLP_ENDPOINT' && path !== '') {
    error(
      'path',
      `OTEL_EXPORTER_OTLP_ENDPOINT has a path (${url.pathname}): Claude Code adds /v1/logs to it, so logs go to ${path}/v1/logs (a 404)`,
      `export OTEL_EXPORTER_OTLP_ENDPOINT=${url.protocol}//${url.host}   (or put the full URL in OTEL_EXPORTER_OTLP_LOGS_ENDPOINT)`,
    );
  } else if (protocol !== 'grpc' && endpointVar === 'OTEL_EXPORTER_OTLP_LOGS_ENDPOINT' && !path.endsWith('/v1/logs')) {
    error(
      'path',
      `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT is used as it is, and ${raw} does not end in /v1/logs (a 404)`,
      `export OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=${url.protocol}//${url.host}/v1/logs`,
    );
  } else if (protocol !== 'grpc') ok('path', `logs go to ${logsTarget(env)?.url}`);

  if (env.OTEL_LOG_USER_PROMPTS === '1') ok('prompts', 'OTEL_LOG_USER_PROMPTS=1: prompt text is sent');
  else
    advice(
      'prompts',
      'OTEL_LOG_USER_PROMPTS is not 1: roots carry no prompt text, and parallel background subagents cannot be placed under their Agent call',
      'export OTEL_LOG_USER_PROMPTS=1',
    );

  const interval = Number(env.OTEL_LOGS_EXPORT_INTERVAL ?? 5000);
  if (Number.isFinite(interval) && interval > 5000) {
    advice(
      'interval',
      `OTEL_LOGS_EXPORT_INTERVAL=${interval}: a turn's root reaches LLMFlow up to ${Math.round(interval / 1000)} s after the turn ends`,
      'export OTEL_LOGS_EXPORT_INTERVAL=1000',
    );
  } else ok('interval', `events leave Claude Code every ${interval / 1000} s or sooner`);
  return out;
}
