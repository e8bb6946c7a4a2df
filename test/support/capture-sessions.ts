/**
 * Captures what the real Claude Code binary (test/peers) sends over OTLP for the sessions the
 * race test (test/integration/race.test.ts) replays: its logs requests (OTLP/JSON
 * ExportLogsServiceRequest bodies, in arrival order), one file per session, under
 * test/fixtures/sessions-<version>/. Run by hand, offline (the stand-in Messages API answers):
 *
 *   node --import tsx test/support/capture-sessions.ts [outDir]
 *
 * Each session gets an OTLP/HTTP endpoint of its own (a process's last export, sent as it exits,
 * cannot land in the next session's file); metrics are answered and dropped. See
 * test/fixtures/README.md.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { ExportLogsRequest } from '@ccbridge/otlp';
import { startAnthropicStandin, type AnthropicStandin } from './anthropic-standin';
import { claudeBinary, claudeCodeVersion, claudeEnv, projectWithHooks, runClaude } from './claude';
import type { CapturedSession } from './race';
import { tempDir } from './peers';

const ROOT = path.join(__dirname, '..', '..');
const ALLOWED = ['Bash(echo:*)', 'Bash(node:*)', 'Read', 'Agent'];
/** How long the stand-in's LONG_TOOL command runs: longer than KILL_AFTER_MS, so its process is killed mid-turn. */
const LONG_TOOL_SECONDS = 60;
/** A prompt marked KILL is killed (SIGKILL, its process group) this long after it started. */
const KILL_AFTER_MS = 6_000;
/** Claude Code's export interval for logs here: short, so a session arrives as several requests. */
const LOGS_INTERVAL_MS = '250';

interface Capture {
  url: string;
  requests: ExportLogsRequest[];
  close(): Promise<void>;
}

/** An OTLP/HTTP endpoint that keeps each /v1/logs body (http/json, gzip undone) and answers 200. */
async function startCapture(): Promise<Capture> {
  const requests: ExportLogsRequest[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
      if (req.url?.startsWith('/v1/logs')) {
        if (!String(req.headers['content-type']).includes('json')) throw new Error('expected http/json');
        requests.push(JSON.parse(body.toString('utf8')) as ExportLogsRequest);
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

const ENV = { OTEL_LOGS_EXPORT_INTERVAL: LOGS_INTERVAL_MS };

/**
 * One `claude -p` process per prompt, each resuming the session of the first. A prompt with
 * LONG_TOOL is killed (SIGKILL) while its tool runs, as a user's Ctrl-C twice or a closed
 * terminal would: what it had not exported yet is lost, and its turn never ends.
 */
async function printMode(api: AnthropicStandin, otlp: string, prompts: string[], cwd?: string): Promise<number> {
  let session: string | undefined;
  for (const prompt of prompts) {
    const killed = prompt.includes('LONG_TOOL');
    const r = await runClaude({
      prompt,
      apiUrl: api.url,
      otlpEndpoint: otlp,
      protocol: 'http/json',
      allowedTools: ALLOWED,
      env: ENV,
      ...(session && { resume: session }),
      ...(cwd && { cwd }),
      ...(killed && { timeoutMs: KILL_AFTER_MS }),
    });
    if (killed) {
      killLeftovers(r.home);
      const started = api.requests.some((q) => q.scenario === 'LONG_TOOL' && q.reply === 'tool_use:Bash');
      if (!r.timedOut || !started) throw new Error(`expected a kill while the tool ran: ${r.stderr}`);
      continue;
    }
    if (r.exitCode !== 0) throw new Error(`claude exited ${r.exitCode}: ${r.stderr}`);
    if (session && r.sessionId !== session) throw new Error(`resumed ${session}, got ${r.sessionId}`);
    session ??= r.sessionId;
  }
  return prompts.length;
}

/**
 * Several prompts in ONE process: `--input-format stream-json`, the next prompt written once
 * the previous one's result is out (all at once, Claude Code drops those after stdin ends).
 */
async function oneProcess(api: AnthropicStandin, otlp: string, prompts: string[]): Promise<number> {
  const home = tempDir('claude-home');
  mkdirSync(path.join(home, '.claude'), { recursive: true });
  mkdirSync(path.join(home, 'tmp'), { recursive: true });
  const env = { ...claudeEnv({ apiUrl: api.url, otlpEndpoint: otlp, protocol: 'http/json' }, home), ...ENV };
  const args = ['-p', '--input-format', 'stream-json', '--output-format', 'stream-json', '--verbose'];
  const child = spawn(claudeBinary(), [...args, '--allowedTools', ...ALLOWED], {
    cwd: tempDir('claude-cwd'),
    env,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const message = (text: string) => `${JSON.stringify({ type: 'user', message: { role: 'user', content: text } })}\n`;
  let next = 0;
  let results = 0;
  let buffer = '';
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  child.stdout.on('data', (d) => {
    buffer += d;
    for (let at = buffer.indexOf('\n'); at >= 0; at = buffer.indexOf('\n')) {
      const line = buffer.slice(0, at);
      buffer = buffer.slice(at + 1);
      let type: unknown;
      try {
        type = (JSON.parse(line) as { type?: unknown }).type;
      } catch {
        continue;
      }
      if (type !== 'result') continue;
      results++;
      if (next < prompts.length) child.stdin.write(message(prompts[next++]!));
      else child.stdin.end();
    }
  });
  child.stdin.write(message(prompts[next++]!));
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  const code = await new Promise<number | null>((r) => child.once('close', r));
  clearTimeout(timer);
  if (code !== 0 || results !== prompts.length)
    throw new Error(`claude exited ${code} after ${results} of ${prompts.length} results: ${stderr}`);
  return 1;
}

/**
 * Claude Code runs a tool's shell in a session of its own, so killing Claude Code's process
 * group leaves the tool running: its process groups are found by the HOME path on their command
 * line (the shell sources a snapshot under it) and killed, by id.
 */
function killLeftovers(home: string): void {
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(home)) continue;
      const pgid = Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[2]);
      process.kill(-pgid, 'SIGKILL');
    } catch {
      /* gone meanwhile */
    }
  }
}

interface Scenario {
  scenario: string;
  description: string;
  prompts: string[];
  run(api: AnthropicStandin, otlp: string, prompts: string[]): Promise<number>;
}

const SCENARIOS: Scenario[] = [
  {
    scenario: 'foreground',
    description: 'a foreground subagent (Agent tool), which runs Bash',
    prompts: ['Please SUBAGENT'],
    run: (a, o, p) => printMode(a, o, p),
  },
  {
    scenario: 'background',
    description: 'a background subagent (run_in_background); its <task-notification> is a second turn',
    prompts: ['Please BG_SUBAGENT'],
    run: (a, o, p) => printMode(a, o, p),
  },
  {
    scenario: 'parallel',
    description: 'two foreground subagents started by one message, run in parallel',
    prompts: ['Please TWO_SUBAGENTS'],
    run: (a, o, p) => printMode(a, o, p),
  },
  {
    scenario: 'hooks',
    description: 'project hooks (UserPromptSubmit, PreToolUse, PostToolUse, Stop) around a Bash call',
    prompts: ['Run it USE_TOOL'],
    run: (a, o, p) => printMode(a, o, p, projectWithHooks()),
  },
  {
    scenario: 'subagent-hooks',
    description: "a foreground subagent in a project with hooks: the subagent's Bash hooks",
    prompts: ['Please SUBAGENT'],
    run: (a, o, p) => printMode(a, o, p, projectWithHooks()),
  },
  {
    scenario: 'many-prompts',
    description: 'six prompts in one process (stream-json input), tools and a subagent among them',
    prompts: [
      'What is 2+2?',
      'Run it USE_TOOL',
      'Do TWO_TOOLS',
      'Go PARALLEL_TOOLS',
      'Please SUBAGENT',
      'Say, then run it TEXT_AND_TOOL',
      'Thanks',
    ],
    run: oneProcess,
  },
  {
    scenario: 'resumed',
    description: 'eight prompts, each in its own process (--resume): one session id, eight processes',
    prompts: [
      'What is 2+2?',
      'Run it USE_TOOL',
      'Do TWO_TOOLS',
      'Go PARALLEL_TOOLS',
      'Please SUBAGENT',
      'Say, then run it TEXT_AND_TOOL',
      'Try REFUSED_TOOL',
      'Thanks',
    ],
    run: (a, o, p) => printMode(a, o, p),
  },
  {
    scenario: 'resumed-killed',
    description:
      'four prompts, four processes (--resume); the second is killed (SIGKILL) while its tool runs, its turn never ended',
    prompts: ['What is 2+2?', 'Run the suite LONG_TOOL', 'Run it USE_TOOL', 'Thanks'],
    run: (a, o, p) => printMode(a, o, p),
  },
];

const recordCount = (requests: ExportLogsRequest[]) =>
  requests
    .flatMap((r) => r.resourceLogs ?? [])
    .flatMap((rl) => rl.scopeLogs ?? [])
    .reduce((n, sl) => n + (sl.logRecords?.length ?? 0), 0);

async function main() {
  const version = claudeCodeVersion();
  const outDir = process.argv[2] ?? path.join(ROOT, 'test', 'fixtures', `sessions-${version}`);
  mkdirSync(outDir, { recursive: true });
  const only = process.env.CAPTURE_ONLY?.split(',');
  const api = await startAnthropicStandin({ longToolSeconds: LONG_TOOL_SECONDS });
  try {
    for (const s of SCENARIOS.filter((x) => !only || only.includes(x.scenario))) {
      const capture = await startCapture();
      let processes: number;
      try {
        processes = await s.run(api, capture.url, s.prompts);
        // Each process exports what it still holds as it exits; give a late request time to land.
        await new Promise((r) => setTimeout(r, 1_500));
      } finally {
        await capture.close();
      }
      const file: CapturedSession = {
        claudeCode: version,
        scenario: s.scenario,
        description: s.description,
        prompts: s.prompts,
        processes,
        requests: capture.requests,
      };
      // One request per line: small diffs when captured again.
      const text = `{\n${Object.entries(file)
        .filter(([k]) => k !== 'requests')
        .map(([k, v]) => `  ${JSON.stringify(k)}: ${JSON.stringify(v)},\n`)
        .join('')}  "requests": [\n${file.requests.map((r) => `    ${JSON.stringify(r)}`).join(',\n')}\n  ]\n}\n`;
      writeFileSync(path.join(outDir, `${s.scenario}.json`), text);
      process.stdout.write(
        `${s.scenario}: ${processes} process(es), ${file.requests.length} requests, ${recordCount(file.requests)} records, ${text.length} bytes\n`,
      );
    }
  } finally {
    await api.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${String((err as Error).stack ?? err)}\n`);
  process.exit(1);
});
