/**
 * Runs the real Claude Code binary (npm @anthropic-ai/claude-code, installed in test/peers) in
 * print mode, offline: its model is the stand-in of ./anthropic-standin, its telemetry goes to
 * the given OTLP endpoint.
 *
 * Each new session gets a fresh temporary HOME with CLAUDE_CONFIG_DIR ($HOME/.claude) and TMPDIR
 * ($HOME/tmp) inside it, and a fresh working directory; `resume` reuses the ones of the session it continues (Claude Code keeps
 * its transcripts under CLAUDE_CONFIG_DIR/projects/<cwd>), so a resumed session finds them.
 * The environment is built from scratch (PATH and a few basics), so nothing of the caller's
 * ANTHROPIC_*, CLAUDE_* or OTEL_* settings, proxies or ~/.claude leaks in.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { tempDir } from './peers';

const ROOT = path.join(__dirname, '..', '..');

/** The version of the Claude Code the tests run (the peer installed in test/peers). */
export function claudeCodeVersion(): string {
  const manifest = path.join(ROOT, 'test', 'peers', 'node_modules', '@anthropic-ai', 'claude-code', 'package.json');
  return (JSON.parse(readFileSync(manifest, 'utf8')) as { version: string }).version;
}

export function claudeBinary(): string {
  return path.join(ROOT, 'test', 'peers', 'node_modules', '.bin', 'claude');
}

export type OtlpProtocol = 'grpc' | 'http/protobuf' | 'http/json';

export interface RunClaudeOptions {
  prompt: string;
  /** The stand-in's base URL (ANTHROPIC_BASE_URL). */
  apiUrl: string;
  /** OTEL_EXPORTER_OTLP_ENDPOINT: the base URL (`/v1/logs` etc. are appended for HTTP; for grpc the bare http://host:port). */
  otlpEndpoint: string;
  protocol: OtlpProtocol;
  /** A session id to continue (`--resume`); its HOME, config dir and working directory are reused. */
  resume?: string;
  /** `--allowedTools` rules, e.g. `Bash(echo:*)`, `Read`. */
  allowedTools?: string[];
  /** Working directory; a fresh temporary one by default (or the resumed session's). */
  cwd?: string;
  /** HOME to use; a fresh temporary one by default (or the resumed session's). CLAUDE_CONFIG_DIR is $HOME/.claude. */
  home?: string;
  /** Added last: overrides any of the variables below (an empty string unsets one). */
  env?: Record<string, string>;
  /** Kills the process (and its children) after this long; 60 s by default. */
  timeoutMs?: number;
  /**
   * The prompt to write on stdin instead of argv (`claude -p` reads its prompt from stdin when
   * argv has none). Linux refuses a single argv string over 128 KB (MAX_ARG_STRLEN), so a longer
   * prompt must go this way. When set, `prompt` is not passed.
   */
  stdin?: string;
}

export interface ClaudeRun {
  exitCode: number | null;
  sessionId?: string;
  result?: string;
  /** The whole `--output-format json` result object, when stdout held one. */
  json?: Record<string, unknown>;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  durationMs: number;
  home: string;
  configDir: string;
  cwd: string;
}

/** Where each session this process ran lives, so `resume` finds its transcript. */
const sessions = new Map<string, { home: string; cwd: string }>();

/** The variables Claude Code needs to run offline, non-interactively, with OTLP telemetry on. */
export function claudeEnv(
  opts: Pick<RunClaudeOptions, 'apiUrl' | 'otlpEndpoint' | 'protocol'>,
  home: string,
): Record<string, string> {
  const base: Record<string, string> = {};
  for (const k of ['PATH', 'LANG', 'LC_ALL', 'TZ', 'SHELL']) if (process.env[k]) base[k] = process.env[k]!;
  return {
    ...base,
    HOME: home,
    CLAUDE_CONFIG_DIR: path.join(home, '.claude'),
    // Its scratch files (/tmp/claude-<uid>/... otherwise) stay in the session's HOME too.
    TMPDIR: path.join(home, 'tmp'),
    CLAUDE_CODE_TMPDIR: path.join(home, 'tmp'),
    ANTHROPIC_BASE_URL: opts.apiUrl,
    ANTHROPIC_API_KEY: 'sk-ant-test',
    // Telemetry: OTLP logs (the events) and metrics, exported often, with prompts and tool details.
    CLAUDE_CODE_ENABLE_TELEMETRY: '1',
    OTEL_LOGS_EXPORTER: 'otlp',
    OTEL_METRICS_EXPORTER: 'otlp',
    OTEL_EXPORTER_OTLP_PROTOCOL: opts.protocol,
    OTEL_EXPORTER_OTLP_ENDPOINT: opts.otlpEndpoint,
    OTEL_LOGS_EXPORT_INTERVAL: '500',
    OTEL_METRIC_EXPORT_INTERVAL: '1000',
    OTEL_LOG_USER_PROMPTS: '1',
    OTEL_LOG_TOOL_DETAILS: '1',
    // Offline: without this Claude Code calls api.anthropic.com at start-up (feature flags,
    // its own event logging) whatever ANTHROPIC_BASE_URL says. It leaves OTel alone, but one
    // built-in plugin (cc-plugin-telemetry) is not loaded, so there is one plugin_loaded event
    // fewer than in the captured fixtures. (DISABLE_TELEMETRY would not stop those calls.)
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    DISABLE_AUTOUPDATER: '1',
    DISABLE_ERROR_REPORTING: '1',
    // FAIL_ONCE: at most two retries, so a broken stand-in fails a test quickly.
    CLAUDE_CODE_MAX_RETRIES: '2',
  };
}

/** Claude Code's own tracing (its beta), for the runs the traces drawn from events are compared with. */
export const NATIVE_TRACING = { CLAUDE_CODE_ENHANCED_TELEMETRY_BETA: '1', OTEL_TRACES_EXPORTER: 'otlp' };

/** Runs `claude -p PROMPT --output-format json` and resolves once it has exited. */
export async function runClaude(opts: RunClaudeOptions): Promise<ClaudeRun> {
  const earlier = opts.resume ? sessions.get(opts.resume) : undefined;
  const home = opts.home ?? earlier?.home ?? tempDir('claude-home');
  const cwd = opts.cwd ?? earlier?.cwd ?? tempDir('claude-cwd');
  const configDir = path.join(home, '.claude');
  mkdirSync(configDir, { recursive: true });
  mkdirSync(path.join(home, 'tmp'), { recursive: true });

  const env: Record<string, string> = { ...claudeEnv(opts, home), ...opts.env };
  for (const [k, v] of Object.entries(env)) if (v === '') delete env[k];

  const args = ['-p', '--output-format', 'json'];
  if (opts.resume) args.push('--resume', opts.resume);
  if (opts.allowedTools?.length) args.push('--allowedTools', ...opts.allowedTools);
  // `--` ends the options (--allowedTools takes several values), so the prompt is never read as one.
  if (opts.stdin === undefined) args.push('--', opts.prompt);

  const started = Date.now();
  // Its own process group, so a timeout stops the tools' shells too.
  const child = spawn(claudeBinary(), args, {
    cwd,
    env,
    stdio: [opts.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    detached: true,
  });
  if (opts.stdin !== undefined) {
    // A process that exits before reading all of it closes the pipe: not this helper's error.
    child.stdin!.on('error', () => {});
    child.stdin!.end(opts.stdin);
  }
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  let timedOut = false;
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      child.kill('SIGKILL');
    }
  }, timeoutMs);
  const exitCode = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    // 'close', not 'exit': stdout is complete.
    child.once('close', (code) => resolve(code));
  }).finally(() => clearTimeout(timer));
  if (timedOut) stderr += `\n[runClaude: killed after ${timeoutMs} ms]`;

  let json: Record<string, unknown> | undefined;
  for (const line of stdout.trim().split('\n').reverse()) {
    try {
      const value = JSON.parse(line) as unknown;
      if (value && typeof value === 'object' && !Array.isArray(value)) {
        json = value as Record<string, unknown>;
        break;
      }
    } catch {
      /* not the result line */
    }
  }
  const sessionId = typeof json?.session_id === 'string' ? json.session_id : undefined;
  if (sessionId) sessions.set(sessionId, { home, cwd });
  return {
    exitCode,
    sessionId,
    result: typeof json?.result === 'string' ? json.result : undefined,
    json,
    stdout,
    stderr,
    timedOut,
    durationMs: Date.now() - started,
    home,
    configDir,
    cwd,
  };
}

/** A project whose .claude/settings.json runs `echo ok` for each hook event the tests look at. */
export function projectWithHooks(): string {
  const cwd = tempDir('claude-hooks');
  mkdirSync(path.join(cwd, '.claude'));
  const hook = (matcher?: string) => [
    { ...(matcher && { matcher }), hooks: [{ type: 'command', command: 'echo ok' }] },
  ];
  writeFileSync(
    path.join(cwd, '.claude', 'settings.json'),
    JSON.stringify({
      hooks: { UserPromptSubmit: hook(), PreToolUse: hook('Bash'), PostToolUse: hook('Bash'), Stop: hook() },
    }),
  );
  return cwd;
}
