/**
 * ccbridge, the operator's command line, run as a process: `doctor` catches each Claude Code
 * misconfiguration that leaves LLMFlow empty, and with good settings sends a synthetic turn
 * through a real bridge into a real LLMFlow over each protocol; `send-fixture` does the same
 * without the checks; `status` says what is reachable and what the queue holds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { startBridge, waitFor } from '../support/peers';
import { useBridgeStack } from '../support/per-file';

const CLI = path.join(__dirname, '..', '..', 'services', 'bridge', 'dist', 'cli.js');

/** Runs ccbridge with only the given environment (and PATH): what a user's shell would hold. */
function ccbridge(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { env: { PATH: process.env.PATH, ...env }, timeout: 60_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

const GOOD = {
  CLAUDE_CODE_ENABLE_TELEMETRY: '1',
  OTEL_LOGS_EXPORTER: 'otlp',
  OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
  OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318',
  OTEL_LOG_USER_PROMPTS: '1',
};

const MISCONFIGURED: [string, Record<string, string | undefined>, string][] = [
  ['telemetry off', { CLAUDE_CODE_ENABLE_TELEMETRY: undefined }, 'telemetry'],
  ['telemetry set to true rather than 1', { CLAUDE_CODE_ENABLE_TELEMETRY: 'true' }, 'telemetry'],
  ['logs exporter not otlp', { OTEL_LOGS_EXPORTER: 'console' }, 'logs'],
  ['logs exporter unset', { OTEL_LOGS_EXPORTER: undefined }, 'logs'],
  ['gRPC pointed at the HTTP port', { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }, 'port'],
  ['HTTP pointed at the gRPC port', { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4317' }, 'port'],
  ['a path in OTEL_EXPORTER_OTLP_ENDPOINT', { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318/v1/logs' }, 'path'],
  ['a logs endpoint without /v1/logs', { OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: 'http://127.0.0.1:4318' }, 'path'],
  ['no endpoint', { OTEL_EXPORTER_OTLP_ENDPOINT: undefined }, 'endpoint'],
  ['an endpoint that is no URL', { OTEL_EXPORTER_OTLP_ENDPOINT: '127.0.0.1:4318' }, 'endpoint'],
  ['a protocol Claude Code does not speak', { OTEL_EXPORTER_OTLP_PROTOCOL: 'http' }, 'protocol'],
];

const withChanges = (changes: Record<string, string | undefined>) => {
  const env: Record<string, string> = { ...GOOD };
  for (const [k, v] of Object.entries(changes))
    if (v === undefined) delete env[k];
    else env[k] = v;
  return env;
};

test('doctor catches each misconfiguration, says what to set, and exits 1', async () => {
  for (const [what, changes, check] of MISCONFIGURED) {
    const r = await ccbridge(['doctor', '--no-send', '--json'], withChanges(changes));
    assert.equal(r.code, 1, what);
    const { findings } = JSON.parse(r.stdout) as { findings: { check: string; severity: string; fix?: string }[] };
    const errors = findings.filter((f) => f.severity === 'error');
    assert.deepEqual(
      errors.map((f) => f.check),
      [check],
      `${what}: ${JSON.stringify(errors)}`,
    );
    assert.match(errors[0]!.fix ?? '', /export /, what);
  }
  const good = await ccbridge(['doctor', '--no-send'], GOOD);
  assert.equal(good.code, 0, good.stdout);
  assert.doesNotMatch(good.stdout, /FIX/);
  const advice = await ccbridge(
    ['doctor', '--no-send', '--json'],
    withChanges({ OTEL_LOG_USER_PROMPTS: undefined, OTEL_LOGS_EXPORT_INTERVAL: '60000' }),
  );
  assert.equal(advice.code, 0, 'advice is not an error');
  assert.deepEqual(
    (JSON.parse(advice.stdout) as { findings: { check: string; severity: string }[] }).findings
      .filter((f) => f.severity === 'advice')
      .map((f) => f.check),
    ['prompts', 'interval'],
  );
});

const peers = useBridgeStack();

test('doctor with good settings sends a synthetic turn where Claude Code would, over each protocol, and finds its root in LLMFlow', async () => {
  for (const env of [
    { ...GOOD, OTEL_EXPORTER_OTLP_ENDPOINT: peers.bridge.url },
    { ...GOOD, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_EXPORTER_OTLP_ENDPOINT: peers.bridge.url },
    {
      ...GOOD,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${peers.bridge.grpcPort}`,
    },
  ]) {
    const r = await ccbridge(['doctor', '--json', '--llmflow', peers.llmflow.url], env);
    const { delivery } = JSON.parse(r.stdout) as { delivery: { sent: boolean; arrived: boolean; rootSpanId: string } };
    assert.equal(r.code, 0, r.stdout);
    assert.equal(delivery.sent, true);
    assert.equal(delivery.arrived, true);
    const root = (await peers.llmflow.spans()).find((s) => s.id === delivery.rootSpanId);
    assert.ok(root, 'the root is stored');
    assert.equal(root.parent_id, null);
  }
});

test('doctor says when the turn never reaches LLMFlow, and send-fixture when nothing listens', async () => {
  const lost = await ccbridge(['doctor', '--llmflow', 'http://127.0.0.1:9', '--timeout', '2'], {
    ...GOOD,
    OTEL_EXPORTER_OTLP_ENDPOINT: peers.bridge.url,
  });
  assert.equal(lost.code, 1);
  assert.match(lost.stdout, /did NOT show in LLMFlow/);
  const nobody = await ccbridge(['send-fixture', '--endpoint', 'http://127.0.0.1:9', '--no-wait'], {});
  assert.equal(nobody.code, 1);
  assert.match(nobody.stdout, /FAILED/);
});

test('send-fixture takes a turn through the whole path without Claude Code', async () => {
  const r = await ccbridge(
    ['send-fixture', '--endpoint', peers.bridge.url, '--protocol', 'http/json', '--llmflow', peers.llmflow.url],
    {},
  );
  assert.equal(r.code, 0, r.stdout);
  assert.match(r.stdout, /is in LLMFlow .* the whole path works/);
});

test('status: Redis and LLMFlow reachable, the queue drained, no dead letters; a wrong LLMFLOW_URL is exit 1 and says what to set', async () => {
  const r = await ccbridge(['status', '--json'], { REDIS_URL: peers.redis.url, LLMFLOW_URL: peers.llmflow.url });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  type Queue = { waiting: number; failed: number; bytes: number; maxBytes: number };
  const s = JSON.parse(r.stdout) as {
    redis: { reachable: boolean };
    llmflow: { reachable: boolean };
    queue: Queue;
    metricsQueue: Queue & { forwarded: boolean };
    deadLetters: number;
    openInteractions: number;
  };
  assert.equal(s.redis.reachable, true);
  assert.equal(s.llmflow.reachable, true);
  assert.equal(s.queue.waiting, 0);
  assert.equal(s.queue.failed, 0);
  assert.deepEqual([s.metricsQueue.waiting, s.metricsQueue.failed, s.metricsQueue.forwarded], [0, 0, true]);
  assert.equal(
    s.queue.maxBytes + s.metricsQueue.maxBytes,
    256 * 1024 * 1024,
    "the metrics' share and the events' make the bound",
  );
  assert.equal(s.metricsQueue.maxBytes, 16 * 1024 * 1024);
  assert.equal(s.deadLetters, 0);
  const wrong = await ccbridge(['status'], { REDIS_URL: peers.redis.url, LLMFLOW_URL: 'http://127.0.0.1:9' });
  assert.equal(wrong.code, 1);
  assert.match(wrong.stdout, /LLMFlow .* NOT reachable .* set LLMFLOW_URL/);
  assert.match(wrong.stdout, /queue +0 waiting/);
  assert.match(wrong.stdout, /metrics +0 waiting/);
  const usage = await ccbridge(['nonsense'], {});
  assert.equal(usage.code, 2);
});

/** Each subcommand, and a line of its own help: every one refuses a flag it does not take. */
const SUBCOMMANDS: [string, RegExp][] = [
  ['status', /^usage: ccbridge status \[--json\]$/m],
  ['doctor', /^usage: ccbridge doctor \[--no-send\]/m],
  ['send-fixture', /^usage: ccbridge send-fixture \[--endpoint URL\]/m],
  ['dead-letters', /^usage: ccbridge dead-letters list/m],
  ['sessions', /^usage: ccbridge sessions \[--limit N\]/m],
];

test('every subcommand refuses a flag it does not take: its own help on stderr, exit 2, nothing done', async () => {
  // The table covers every command the top-level help lists.
  const help = await ccbridge(['--help'], {});
  const listed = [...help.stderr.matchAll(/^ {2}([a-z][a-z-]+)/gm)].map((m) => m[1]);
  assert.deepEqual(
    listed,
    SUBCOMMANDS.map(([name]) => name),
    help.stderr,
  );
  // Nothing answers at these: a command that ran anyway would fail otherwise, not with usage.
  const nowhere = { REDIS_URL: 'redis://127.0.0.1:9', LLMFLOW_URL: 'http://127.0.0.1:9' };
  const ran: string[] = [];
  for (const [name, own] of SUBCOMMANDS) {
    for (const argv of [
      [name, '--no-such-flag'],
      [name, '--json', '--no-such-flag=1'],
    ]) {
      const r = await ccbridge(argv, nowhere);
      assert.equal(r.code, 2, `${argv.join(' ')}: ${r.stderr}`);
      assert.equal(r.stdout, '', argv.join(' '));
      assert.match(r.stderr, new RegExp(`^ccbridge ${name}: Unknown option '--no-such-flag'`), argv.join(' '));
      assert.match(r.stderr, own, `${argv.join(' ')}: its own help`);
      for (const [other, theirs] of SUBCOMMANDS)
        if (other !== name) assert.doesNotMatch(r.stderr, theirs, `${argv.join(' ')}: not ${other}'s help`);
    }
    const asked = await ccbridge([name, '--help'], nowhere);
    assert.equal(asked.code, 0, `${name} --help`);
    assert.match(asked.stderr, own, `${name} --help`);
    ran.push(name);
  }
  assert.deepEqual(
    ran,
    SUBCOMMANDS.map(([name]) => name),
  );
});

test('a worker says at start-up whether LLMFlow answers at LLMFLOW_URL, and what to set when not', async () => {
  const lost = await startBridge({
    REDIS_URL: peers.redis.url,
    BRIDGE_ROLE: 'worker',
    LLMFLOW_URL: 'http://127.0.0.1:9',
  });
  const found = await startBridge({
    REDIS_URL: peers.redis.url,
    BRIDGE_ROLE: 'worker',
    LLMFLOW_URL: peers.llmflow.url,
  });
  try {
    await waitFor(
      'the start-up line',
      () =>
        /LLMFlow does not answer at http:\/\/127\.0\.0\.1:9: set LLMFLOW_URL/.test(lost.output()) &&
        /"msg":"LLMFlow answers"/.test(found.output()),
    );
  } finally {
    await Promise.all([lost.stop(), found.stop()]);
  }
});

test('npx ccbridge runs from the checkout (the bin is linked once it is built)', async () => {
  const r = await new Promise<{ code: number; stderr: string }>((resolve) => {
    execFile(
      'npx',
      ['--no-install', 'ccbridge', '--help'],
      {
        cwd: path.join(__dirname, '..', '..'),
        env: { PATH: process.env.PATH, HOME: process.env.HOME ?? '/tmp' },
        timeout: 60_000,
      },
      (err, _stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }),
    );
  });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /usage: ccbridge <command>/);
});
