/**
 * The worker-cost load (worker-cost.ts): what the real Claude Code binary sends over OTLP
 * (http/protobuf) for one resumed session of several prompts, against the tests' stand-in API:
 * a foreground subagent, a background one (its `<task-notification>` turn included), two tools in
 * one message and two parallel subagents, each prompt its own `claude -p` process (start-up
 * events, then the turn, then its metrics at exit). Captured once per machine and cached outside
 * the repo, as the Collector is (test/collector/build.sh), at
 *   ${CCBRIDGE_CACHE:-$HOME/.cache/ccbridge}/bench-session-<hash>.json
 * keyed by Claude Code's version, the stand-in's script and the prompts.
 *
 * Alone (captures if need be, then prints what it holds): node --import tsx test/bench/sessions.ts
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { startAnthropicStandin } from '../support/anthropic-standin';
import { claudeCodeVersion, runClaude } from '../support/claude';

const ROOT = path.join(__dirname, '..', '..');

/** The session's prompts, in order, one `claude -p` process each (the later ones resume it). */
export const PROMPTS = ['Please SUBAGENT', 'Please BG_SUBAGENT', 'Do TWO_TOOLS', 'Please TWO_SUBAGENTS'];

/** One OTLP request as Claude Code sent it (protobuf, gzip undone). */
export interface CapturedRequest {
  signal: 'logs' | 'metrics';
  body: Buffer;
}

export interface CapturedSession {
  claudeCode: string;
  prompts: string[];
  requests: CapturedRequest[];
}

function cachePath(): { file: string; version: string } {
  const version = claudeCodeVersion();
  const hash = createHash('sha256')
    .update(version)
    .update(readFileSync(path.join(ROOT, 'test', 'support', 'anthropic-standin.ts')))
    .update(JSON.stringify(PROMPTS))
    .digest('hex')
    .slice(0, 16);
  const root = process.env.CCBRIDGE_CACHE ?? path.join(os.homedir(), '.cache', 'ccbridge');
  return { file: path.join(root, `bench-session-${hash}.json`), version };
}

/** An OTLP/HTTP endpoint that records each logs and metrics request and answers 200. */
async function recorder(): Promise<{ url: string; requests: CapturedRequest[]; close: () => Promise<void> }> {
  const requests: CapturedRequest[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const body = req.headers['content-encoding'] === 'gzip' ? zlib.gunzipSync(raw) : raw;
      const signal = req.url?.endsWith('/v1/logs') ? 'logs' : req.url?.endsWith('/v1/metrics') ? 'metrics' : undefined;
      if (signal) requests.push({ signal, body });
      res.writeHead(200, { 'content-type': 'application/x-protobuf' });
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

async function capture(version: string): Promise<CapturedSession> {
  const [api, sink] = await Promise.all([startAnthropicStandin(), recorder()]);
  try {
    let session: string | undefined;
    for (const prompt of PROMPTS) {
      const r = await runClaude({
        prompt,
        apiUrl: api.url,
        otlpEndpoint: sink.url,
        protocol: 'http/protobuf',
        allowedTools: ['Bash(echo:*)', 'Read', 'Agent'],
        resume: session,
        timeoutMs: 120_000,
      });
      if (r.exitCode !== 0) throw new Error(`claude -p ${JSON.stringify(prompt)} exited ${r.exitCode}: ${r.stderr}`);
      session ??= r.sessionId;
    }
    // Claude Code exports at exit; a last request may still be on its way.
    await new Promise((r) => setTimeout(r, 1000));
    return { claudeCode: version, prompts: PROMPTS, requests: [...sink.requests] };
  } finally {
    await Promise.all([api.stop(), sink.close()]);
  }
}

/** The session, from the cache, or captured now with the real binary (about a minute) and cached. */
export async function capturedSession(progress: (what: string) => void = () => {}): Promise<CapturedSession> {
  const { file, version } = cachePath();
  if (existsSync(file)) {
    const cached = JSON.parse(readFileSync(file, 'utf8')) as {
      claudeCode: string;
      prompts: string[];
      requests: { signal: 'logs' | 'metrics'; body: string }[];
    };
    return {
      ...cached,
      requests: cached.requests.map((r) => ({ signal: r.signal, body: Buffer.from(r.body, 'base64') })),
    };
  }
  progress(`capturing a Claude Code ${version} session (${PROMPTS.length} prompts) into ${file}`);
  const session = await capture(version);
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(
    tmp,
    JSON.stringify({ ...session, requests: session.requests.map((r) => ({ ...r, body: r.body.toString('base64') })) }),
  );
  renameSync(tmp, file);
  return session;
}

if (require.main === module) {
  capturedSession((w) => process.stderr.write(`${w}\n`)).then(
    (s) => {
      const count = (signal: string) => s.requests.filter((r) => r.signal === signal).length;
      console.log(
        JSON.stringify({
          claudeCode: s.claudeCode,
          prompts: s.prompts,
          logs: count('logs'),
          metrics: count('metrics'),
        }),
      );
    },
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
}
