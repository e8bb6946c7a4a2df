/**
 * `docker compose up`, as a user runs it: the shipped docker-compose.yml, unchanged, on a real
 * Docker engine (test/support/compose-engine.sh gets one; on these CI machines its base images
 * are local stand-ins). The real Claude Code binary, against the tests' stand-in Messages API,
 * sends to the Collector's published ports over each protocol, and every turn lands in the
 * bundled LLMFlow as its complete tree; then the stack is put through what happens to it:
 * the worker recreated mid-turn, the ingest stopped for a while, down and up again, three
 * workers, a second destination, and an LLMFlow of one's own outside compose.
 *
 * Without an engine this test is skipped on a developer's machine, and fails under CI.
 */
import type { AddressInfo } from 'node:net';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { startAnthropicStandin, type AnthropicStandin } from '../support/anthropic-standin';
import { runClaude, type OtlpProtocol } from '../support/claude';
import { startLlmflow, waitFor, type LlmflowPeer } from '../support/peers';
import { LLMFLOW_READ_SCRIPT } from '../support/llmflow-db';

const ROOT = path.join(__dirname, '..', '..');
const PROJECT = 'ccbridge-compose-test';
const ENGINE = (() => {
  try {
    execFileSync('docker', ['compose', 'version'], { stdio: 'ignore' });
    execFileSync('docker', ['info'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
const skip =
  !ENGINE && !process.env.CI ? 'no Docker engine answers (npm test starts one where ../shared/compose exists)' : false;

/** Runs `docker compose -p PROJECT ARGS` in the checkout; resolves with its stdout, rejects with its output on failure. */
function compose(args: string[], env: Record<string, string> = {}, files = ['docker-compose.yml']): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'docker',
      ['compose', '-p', PROJECT, ...files.flatMap((f) => ['-f', f]), ...args],
      { cwd: ROOT, env: { ...process.env, ...env }, maxBuffer: 64 * 1024 * 1024, timeout: 600_000 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`docker compose ${args.join(' ')}: ${err.message}\n${stdout}\n${stderr}`));
        else resolve(stdout);
      },
    );
  });
}

interface Span {
  id: string;
  trace_id: string;
  parent_id: string | null;
  span_name: string;
  attributes: Record<string, unknown>;
}

/** Every span the bundled LLMFlow stored, read from its SQLite file inside its container. */
async function spans(): Promise<Span[]> {
  const out = await compose([
    'exec',
    '-T',
    '-e',
    'LLMFLOW_DB=/data/data.db',
    '-e',
    'LLMFLOW_SQL=SELECT id, trace_id, parent_id, span_name, attributes FROM traces',
    'llmflow',
    'node_modules/.bin/bun',
    '-e',
    LLMFLOW_READ_SCRIPT,
  ]);
  const rows = JSON.parse(out.slice(out.indexOf('['))) as (Omit<Span, 'attributes'> & { attributes: string | null })[];
  return rows.map((r) => ({ ...r, attributes: JSON.parse(r.attributes ?? '{}') as Record<string, unknown> }));
}

/** The traces of a Claude Code session, once there are `turns` of them, each complete (one root, every parent there). */
async function treesOf(session: string, turns = 1, timeoutMs = 60_000): Promise<Span[][]> {
  return waitFor(
    `${turns} complete trace(s) of session ${session}`,
    async () => {
      const all = await spans();
      const ids = new Set(all.filter((s) => s.attributes['session.id'] === session).map((s) => s.trace_id));
      const trees = [...ids].map((id) => all.filter((s) => s.trace_id === id));
      const complete = (t: Span[]) => {
        const roots = t.filter((s) => !s.parent_id);
        const byId = new Set(t.map((s) => s.id));
        return (
          roots.length === 1 &&
          roots[0]!.attributes['claude_code.interaction.complete'] === true &&
          t.every((s) => !s.parent_id || byId.has(s.parent_id))
        );
      };
      return trees.length === turns && trees.every(complete) ? trees : undefined;
    },
    timeoutMs,
    500,
  );
}

let api: AnthropicStandin;
/** How many spans a USE_TOOL turn draws with one worker (the first test's). */
let toolTreeSpans = 0;
const claude = (prompt: string, protocol: OtlpProtocol = 'http/protobuf') =>
  runClaude({
    prompt,
    apiUrl: api.url,
    otlpEndpoint: protocol === 'grpc' ? 'http://127.0.0.1:4317' : 'http://127.0.0.1:4318',
    protocol,
    allowedTools: ['Bash(echo:*)'],
    timeoutMs: 120_000,
  });

before(async () => {
  if (skip) return;
  assert.ok(ENGINE, 'CI is set and no Docker engine answers: npm test starts one with ../shared/compose/prepare.sh');
  api = await startAnthropicStandin({ slowMs: 6_000 });
  await compose(['down', '-v', '--remove-orphans']).catch(() => undefined);
  await compose(['up', '-d', '--build', '--wait']);
});
after(async () => {
  if (skip) return;
  await compose(['down', '-v', '--remove-orphans']).catch(() => undefined);
  await api?.stop();
});

test(
  'Claude Code over gRPC, http/protobuf and http/json to the Collector: every turn in the bundled LLMFlow as its complete tree',
  { skip },
  async () => {
    for (const protocol of ['grpc', 'http/protobuf', 'http/json'] as const) {
      const r = await claude('Run it USE_TOOL', protocol);
      assert.equal(r.exitCode, 0, r.stderr);
      const [tree] = await treesOf(r.sessionId!);
      const names = tree!.map((s) => s.span_name);
      assert.equal(names.filter((n) => n === 'claude_code.llm_request').length, 2, protocol);
      assert.equal(names.filter((n) => n === 'claude_code.tool').length, 1, protocol);
      toolTreeSpans = tree!.length;
    }
    const metrics = await (await fetch('http://127.0.0.1:8889/metrics')).text();
    assert.match(metrics, /claude_code_token_usage/, "Claude Code's metrics for Prometheus");
  },
);

test(
  'the worker recreated mid-turn (what `up -d` does after a change) loses nothing: the root is drawn once, complete',
  { skip },
  async () => {
    const turn = claude('Think slowly SLOW_ANSWERS');
    // The turn is under way once the worker holds it open (its prompt processed, its end not yet):
    // asked of ccbridge status inside the worker's container, as the README says to.
    await waitFor(
      'the turn open in the worker',
      async () => {
        const out = await compose([
          'exec',
          '-T',
          'bridge-worker',
          'npx',
          '--no-install',
          'ccbridge',
          'status',
          '--json',
        ]).catch(() => '{}');
        return (
          ((JSON.parse(out.slice(out.indexOf('{'))) as { openInteractions?: number }).openInteractions ?? 0) >= 1 ||
          undefined
        );
      },
      60_000,
      500,
    );
    await compose(['up', '-d', '--force-recreate', '--no-deps', '--wait', 'bridge-worker']);
    const r = await turn;
    assert.equal(r.exitCode, 0, r.stderr);
    const [tree] = await treesOf(r.sessionId!);
    assert.equal(tree!.filter((s) => !s.parent_id).length, 1);
  },
);

test(
  'the ingest stopped for a while loses nothing: the Collector keeps the data and delivers it',
  { skip },
  async () => {
    await compose(['stop', 'bridge-ingest']);
    const r = await claude('What is 2+2?');
    assert.equal(r.exitCode, 0, r.stderr);
    await compose(['start', 'bridge-ingest']);
    await treesOf(r.sessionId!, 1, 120_000);
  },
);

test('down and up again keep the data; three workers draw each span once', { skip }, async () => {
  const before = (await spans()).length;
  await compose(['down']);
  await compose(['up', '-d', '--wait', '--scale', 'bridge-worker=3']);
  assert.equal((await spans()).length, before, 'LLMFlow kept every span');
  const r = await claude('Run it USE_TOOL');
  assert.equal(r.exitCode, 0, r.stderr);
  const [tree] = await treesOf(r.sessionId!);
  assert.equal(new Set(tree!.map((s) => s.id)).size, tree!.length);
  assert.equal(tree!.length, toolTreeSpans, 'as many spans as the same turn drew with one worker');
  await compose(['up', '-d', '--wait', '--scale', 'bridge-worker=1']);
});

test('the second destination overlay delivers to an OTLP endpoint of its own', { skip }, async () => {
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    seen.push(req.url ?? '');
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
  });
  await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
  const { port } = server.address() as AddressInfo;
  const files = ['docker-compose.yml', 'docker-compose.second.yml'];
  try {
    await compose(['up', '-d', '--wait'], { SECOND_OTLP_ENDPOINT: `http://host.docker.internal:${port}` }, files);
    const r = await claude('What is 2+2?');
    assert.equal(r.exitCode, 0, r.stderr);
    await waitFor('logs at the second destination', () => seen.includes('/v1/logs') || undefined, 60_000, 200);
  } finally {
    await compose(['up', '-d', '--wait']);
    await new Promise<void>((r) => server.close(() => r()));
  }
});

test('an LLMFlow of your own outside compose is reached with LLMFLOW_URL, as the README says', { skip }, async () => {
  let own: LlmflowPeer | undefined;
  try {
    own = await startLlmflow();
    const port = new URL(own.url).port;
    await compose(['up', '-d', '--wait', 'otel-collector', 'redis', 'bridge-ingest', 'bridge-worker'], {
      LLMFLOW_URL: `http://host.docker.internal:${port}`,
    });
    const r = await claude('What is 2+2?');
    assert.equal(r.exitCode, 0, r.stderr);
    await waitFor(
      'the turn in your own LLMFlow',
      async () =>
        (await own!.spans()).some((s) => !s.parent_id && s.span_name === 'claude_code.interaction') || undefined,
      60_000,
      500,
    );
  } finally {
    await compose(['up', '-d', '--wait']);
    await own?.stop();
  }
});
