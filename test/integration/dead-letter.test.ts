/**
 * Spans LLMFlow refuses for their content: the whole bridge (npm start) with real Redis, in
 * front of a real LLMFlow behind a gate that refuses any request carrying a marker. A refused
 * span goes to the dead-letter store at once (its batch is not retried), holds back no other
 * span or root, and the operator lists and replays it with `ccbridge dead-letters` (`npm run dead-letter`).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
import { Redis } from 'ioredis';
import { queueKey } from '@ccbridge/redis';
import { logsOf } from '../support/fixtures';
import { startLlmflowGate, type LlmflowGate } from '../support/llmflow-gate';
import {
  post,
  startBridge,
  startLlmflow,
  startRedis,
  waitFor,
  type BridgePeer,
  type LlmflowPeer,
  type RedisPeer,
} from '../support/peers';

let redis: RedisPeer;
let llmflow: LlmflowPeer;
let gate: LlmflowGate;
let bridge: BridgePeer;
let refusing = true;

before(async () => {
  [redis, llmflow] = await Promise.all([startRedis(), startLlmflow()]);
  gate = await startLlmflowGate(llmflow.url, { refuse: (body) => refusing && body.includes('POISON') });
  bridge = await startBridge({ REDIS_URL: redis.url, LLMFLOW_URL: gate.url });
});
after(async () => {
  await bridge?.stop();
  await gate?.stop();
  await Promise.all([llmflow?.stop(), redis?.stop()]);
});

/** The captured tool turn as a new session, its prompt id and session id replaced; `poison` marks its tool's input. */
function session(name: string, poison: boolean): Buffer {
  const logs = logsOf('json', 'tool');
  let text = JSON.stringify(logs)
    .replaceAll('1a9ef97e-a983-4ecc-b0e1-ba3b9dfe95f7', `session-${name}`)
    .replaceAll('fadb0d6a-bca5-4e4a-8e96-838a52e2e8be', `prompt-${name}`);
  if (poison) text = text.replaceAll('hello-from-tool', 'POISON');
  return Buffer.from(text);
}

const ROOT = path.join(__dirname, '..', '..');
async function deadLetterCli(...args: string[]): Promise<unknown[]> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [path.join(ROOT, 'services', 'bridge', 'dist', 'cli.js'), 'dead-letters', ...args],
    {
      env: { PATH: process.env.PATH, REDIS_URL: redis.url, LLMFLOW_URL: llmflow.url },
    },
  );
  return stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as unknown);
}

test('a span refused for its content goes to the dead-letter store at once, holds back no root, and can be replayed', async () => {
  assert.equal((await post(`${bridge.url}/v1/logs`, session('poisoned', true), 'application/json')).status, 200);
  assert.equal((await post(`${bridge.url}/v1/logs`, session('clean', false), 'application/json')).status, 200);

  // Both turns are whole in LLMFlow but for the refused spans: both roots drawn, no waiting.
  const spans = await waitFor(
    'both roots in LLMFlow',
    async () => {
      const all = await llmflow.spans();
      const roots = all.filter((s) => !s.parent_id && /session-(poisoned|clean)/.test(s.attributes));
      return roots.length === 2 ? all : undefined;
      // As long as the other LLMFlow waits here: a worker that once found LLMFlow slow backs off up to 30 s.
    },
    60_000,
  ).catch((err: Error) => {
    throw new Error(`${err.message}\nthe bridge said:\n${bridge.output().split('\n').slice(-30).join('\n')}`);
  });
  const ofSession = (name: string) => spans.filter((s) => s.attributes.includes(`session-${name}`));
  // The tool span carries the tool's input, and so does the LLM call that got its result (its
  // input, inputs.ts); the tool's execution and decision keep ids alone.
  const refusedNames = ['claude_code.llm_request', 'claude_code.tool'];
  assert.ok(ofSession('clean').some((s) => s.span_name === 'claude_code.tool'));
  assert.deepEqual(
    ofSession('poisoned')
      .filter((s) => s.attributes.includes('POISON'))
      .map((s) => s.span_name),
    [],
    'the refused spans are not in LLMFlow',
  );
  assert.ok(
    ofSession('poisoned').some((s) => s.span_name === 'claude_code.llm_request'),
    'the first call, beside them, is',
  );
  for (const name of ['claude_code.tool.execution', 'claude_code.tool.blocked_on_user']) {
    assert.ok(
      ofSession('poisoned').some((s) => s.span_name === name),
      `${name}, beside it, is`,
    );
  }
  assert.ok(gate.refused > 0);

  // ...and in the dead-letter store, with LLMFlow's reason; the batch was never failed or retried.
  const listed = (await deadLetterCli('list')) as { spanId?: string; name?: string; reason?: string; total?: number }[];
  const entries = listed.filter((e) => e.spanId);
  assert.deepEqual(entries.map((e) => e.name).sort(), [...refusedNames].sort());
  assert.ok(entries.every((e) => /400/.test(e.reason ?? '')));
  assert.equal(listed.at(-1)!.total, refusedNames.length);
  const probe = new Redis(redis.url);
  try {
    assert.equal(await probe.zcard(queueKey('failed')), 0);
    assert.equal(await probe.zcard(queueKey('delayed')), 0);
  } finally {
    probe.disconnect();
  }
  assert.doesNotMatch(bridge.output(), /a batch failed/);

  // Replayed once LLMFlow takes them: they join their trace and leave the store.
  refusing = false;
  const [outcome] = (await deadLetterCli('replay')) as { replayed: number; refused: number; left: number }[];
  assert.deepEqual(outcome, { replayed: refusedNames.length, refused: 0, left: 0 });
  const after = await llmflow.spans();
  const poisoned = after.filter((s) => s.attributes.includes('session-poisoned'));
  assert.deepEqual(
    poisoned
      .filter((s) => s.attributes.includes('POISON'))
      .map((s) => s.span_name)
      .sort(),
    refusedNames,
  );
  assert.equal(new Set(poisoned.map((s) => s.trace_id)).size, 1);
});
