/**
 * Failure at every step (issue 23, "Done when" 2). One batch of real Claude Code event shapes
 * (the `tool` capture's session, with a foreground subagent, a background Agent call and its
 * subagent's totals, the turn's end, and the background agent's notification turn) is processed
 * by a worker as services/worker wires it (processBatch, the closer, the sessions ledger taking in its news), on a
 * real Redis; the same events also as two batches, cut where the background call is launched, and
 * as one batch with a second session on another shard whose turn goes on (its shard hands back
 * nothing to commit).
 * A clean run counts the steps of the jobs: every Redis call (a command, a script, a pipeline's
 * exec) and every export. Then, for each step k, the same delivery runs fresh with step k
 * failing once, the job retried as BullMQ retries it:
 * - Redis refuses step k (nothing runs; the connection dropped before it was sent);
 * - Redis runs step k but its answer is lost (the connection dropped after it was sent);
 * - the export of step k fails (LLMFlow took nothing);
 * - the worker dies at step k (nothing of it or after it runs), or after the job's last step
 *   before BullMQ marked it done; another worker takes the job back after BullMQ's stalled check.
 * After the job, closer rounds run as the worker's timer runs them, past a claim's lease. Then
 * LLMFlow (what the exports delivered), the lifecycle's counters and the ledger must be as in the
 * clean run: the same spans with the same content, each sent as often as in the clean run,
 * nothing counted late, the same roots drawn, the ledger's sums the batch's.
 *
 * The failures are injected at the worker's boundaries only (a Proxy around its ioredis client,
 * a wrapper around its span sink), so the test holds for any protocol behind processBatch.
 * One re-send is not counted against the code: when the worker failed after an export went out
 * and before any Redis call of the lifecycle after it took effect, nothing can know that export
 * went out, so its spans may go again (with the same content: LLMFlow keeps one copy).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import {
  LifecycleStore,
  TurnCloser,
  processBatch,
  type BatchProcessorDeps,
  type SpanSink,
} from '@ccbridge/claude-events';
import { JOB_ANSWER, JOB_BACKOFF, ROOT_RETRY_MS, kindOf } from '@ccbridge/errors';
import { silentLogger } from '@ccbridge/log';
import { attributesToRecord, type ExportLogsRequest, type LogRecord, type ResourceSpans } from '@ccbridge/otlp';
import { LedgerStore, eventContributions, type SessionLedger } from '@ccbridge/sessions';
import { shardOf } from '@ccbridge/redis';
import { logsOf } from '../support/fixtures';
import { ManualClock, recordsOf, requestOf, treeOf, type CollectedSpan } from '../support/assembly';
import { useRedis } from '../support/per-file';

const peers = useRedis();

// ---------------------------------------------------------------------------------------------
// The batch: the `tool` capture's session and its records' shapes, as Claude Code 2.1.3xx logs
// a turn with a foreground and a background subagent (docs/CLAUDE_CODE_EVENTS.md).

const FG_CALL = 'toolu_01FgAgentCall';
const BG_CALL = 'toolu_01BgAgentCall';
const FG_AGENT = 'a1f00dfeed0000001';
const BG_AGENT = 'a2b00dfeed0000002';
const P2 = 'b7e1c0de-0000-4000-8000-00000000f00d';

const nameOf = (r: LogRecord) => r.body?.stringValue?.replace('claude_code.', '') ?? '';

function theBatch(): ExportLogsRequest {
  const template = logsOf('json', 'tool');
  const captured = recordsOf(template);
  const first = (event: string) => captured.find((r) => nameOf(r) === event)!;
  const startUp = captured.filter((r) => !r.attributes!.some((a) => a.key === 'prompt.id'));
  const prompt = first('user_prompt');
  const promptId = prompt.attributes!.find((a) => a.key === 'prompt.id')!.value!.stringValue!;
  /** A captured record of the same event with fields replaced or added (and `drop` removed). */
  const like = (
    event: string,
    fields: Record<string, string>,
    { from = event, drop = [] as string[], prompt = promptId } = {},
  ): LogRecord => {
    const base = first(from);
    const kept = base.attributes!.filter((a) => !(a.key in fields) && !drop.includes(a.key));
    const set = { ...fields, 'event.name': event, 'prompt.id': prompt };
    return {
      ...base,
      body: { stringValue: `claude_code.${event}` },
      attributes: [
        ...kept.filter((a) => !(a.key in set)),
        ...Object.entries(set).map(([key, v]) => ({ key, value: { stringValue: v } })),
      ],
    };
  };
  const sub = (agent: string) => ({ agent_id: agent, query_source: 'agent:builtin:general-purpose' });
  const agentInput = (background: boolean) =>
    JSON.stringify({
      description: background ? 'background task' : 'foreground task',
      prompt: 'SUBTASK run echo',
      subagent_type: 'general-purpose',
      run_in_background: background,
    });
  const decision = (call: string, request: string) =>
    like('tool_decision', {
      tool_name: 'Agent',
      tool_use_id: call,
      request_id: request,
      tool_parameters: '{"subagent_type":"general-purpose"}',
    });
  const result = (call: string, request: string, background: boolean) =>
    like('tool_result', {
      tool_name: 'Agent',
      tool_use_id: call,
      request_id: request,
      tool_parameters: '{"subagent_type":"general-purpose"}',
      tool_input: agentInput(background),
      duration_ms: background ? '3' : '900',
      tool_result_size_bytes: background ? '212' : '64',
    });
  const api = (request: string, fields: Record<string, string> = {}, prompt = promptId) =>
    like('api_request', { request_id: request, ...fields }, { prompt });
  const answer = (request: string, text: string, fields: Record<string, string> = {}, prompt = promptId) =>
    like(
      'assistant_response',
      { request_id: request, response: text, response_length: String(text.length), ...fields },
      { prompt },
    );
  const completed = (agent: string, tokens: string) =>
    like(
      'subagent_completed',
      { agent_id: agent, agent_type: 'general-purpose', total_tokens: tokens, total_tool_use_count: '0' },
      { from: 'api_request', drop: ['model', 'request_id', 'query_source', 'speed', 'effort'] },
    );
  const records = [
    ...startUp,
    like('user_prompt', { prompt: 'Run SUBAGENT, then BG_SUBAGENT', prompt_text: 'Run SUBAGENT, then BG_SUBAGENT' }),
    // A foreground subagent: between its call's decision and result; its totals just before the result.
    decision(FG_CALL, 'req_main_1'),
    api('req_main_1'),
    api('req_fg_1', sub(FG_AGENT)),
    answer('req_fg_1', 'Sub done.', sub(FG_AGENT)),
    completed(FG_AGENT, '555'),
    result(FG_CALL, 'req_main_1', false),
    // A background Agent call: it returns at once (async_launched); the turn ends ...
    decision(BG_CALL, 'req_main_2'),
    api('req_main_2'),
    result(BG_CALL, 'req_main_2', true),
    api('req_main_3'),
    answer('req_main_3', 'Main done.', { query_source: 'sdk' }),
    // ... while its subagent still runs; its totals, then the notification's turn.
    api('req_bg_1', sub(BG_AGENT)),
    answer('req_bg_1', 'Background sub done.', sub(BG_AGENT)),
    completed(BG_AGENT, '777'),
    like(
      'user_prompt',
      {
        prompt: `<task-notification>\n<task-id>${BG_AGENT}</task-id>\n<tool-use-id>${BG_CALL}</tool-use-id>\n</task-notification>`,
        prompt_text: 'notification',
      },
      { prompt: P2 },
    ),
    api('req_main_4', {}, P2),
    answer('req_main_4', 'Noted.', { query_source: 'sdk' }, P2),
  ];
  // Numbered and timed in record order, as one process logs them (10 ms apart).
  const t0 = BigInt(startUp[0]!.timeUnixNano!);
  const numbered = records.map((r, i) => ({
    ...r,
    timeUnixNano: String(t0 + BigInt(i) * 10_000_000n),
    observedTimeUnixNano: String(t0 + BigInt(i) * 10_000_000n),
    attributes: r.attributes!.map((a) =>
      a.key === 'event.sequence'
        ? { key: a.key, value: { intValue: String(i) } }
        : a.key === 'event.timestamp'
          ? {
              key: a.key,
              value: { stringValue: new Date(Number((t0 + BigInt(i) * 10_000_000n) / 1_000_000n)).toISOString() },
            }
          : a,
    ),
  }));
  return requestOf(template, numbered);
}

// ---------------------------------------------------------------------------------------------
// Steps: every Redis call and every export of the batch's first attempt, numbered; one of them
// may be made to fail.

type StepKind = 'redis' | 'ledger' | 'export';
type FaultMode = 'refuse' | 'lose' | 'kill';

interface Fault {
  mode: FaultMode;
  /** The step that fails; */
  at?: number;
  /** ... or (a kill) after the last step of this job, before BullMQ marked it done. */
  beforeDoneOfJob?: number;
}

interface Step {
  n: number;
  /** Which job (batch) it belongs to, from 1. */
  job: number;
  kind: StepKind;
  what: string;
  /** It took effect: a Redis call that ran, an export that was delivered. */
  took: boolean;
  /** Span ids an export delivered. */
  spanIds?: string[];
}

class InjectedFailure extends Error {
  constructor(message: string) {
    // As ioredis says it when the connection drops under a command (retryable: @ccbridge/errors redis.ts).
    super(`Connection is closed. (injected: ${message})`);
  }
}

const never = <T>() => new Promise<T>(() => {});

class Steps {
  readonly log: Step[] = [];
  /** Steps are counted (and faulted) until the fault fired: the jobs' first attempts up to the failure. */
  counting = true;
  /** The job the steps are of now. */
  job = 1;
  /** The step at which the fault fired. */
  firedAt: number | undefined;
  /** The worker is dead: nothing of it runs any more. */
  dead = false;
  readonly killed: Promise<'killed'>;
  private kill!: () => void;

  constructor(private fault?: Fault) {
    this.killed = new Promise((resolve) => (this.kill = () => resolve('killed')));
  }

  async run<T>(kind: StepKind, what: string, call: () => Promise<T>, spanIds?: string[]): Promise<T> {
    if (this.dead) return never();
    if (!this.counting) return call();
    const step: Step = { n: this.log.length + 1, job: this.job, kind, what, took: false, spanIds };
    this.log.push(step);
    const fault = this.fault?.at === step.n ? this.fault : undefined;
    if (fault) {
      this.fault = undefined;
      this.firedAt = step.n;
    }
    if (fault?.mode === 'kill') {
      this.dead = true;
      this.kill();
      return never();
    }
    if (fault?.mode === 'refuse') throw new InjectedFailure(`step ${step.n} (${what}) refused`);
    const out = await call();
    step.took = true;
    if (fault?.mode === 'lose') throw new InjectedFailure(`step ${step.n} (${what}) ran, its answer lost`);
    return out;
  }
}

/**
 * The worker's ioredis client as its stores see it: each command, script (defineCommand) and
 * pipeline exec is a step. Everything else (events, status, defineCommand) goes to the client.
 */
function stepped(client: Redis, steps: Steps, kind: StepKind): Redis {
  const builtin = new Set(client.getBuiltinCommands());
  const scripts = new Set<string>();
  const isCall = (prop: string) =>
    scripts.has(prop) || builtin.has(prop.replace(/Buffer$/, '').toLowerCase()) || prop === 'call';
  return new Proxy(client, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function' || typeof prop !== 'string') return value;
      const fn = value as (...args: unknown[]) => unknown;
      if (prop === 'defineCommand')
        return (name: string, definition: unknown) => {
          scripts.add(name);
          return fn.call(target, name, definition);
        };
      if (prop === 'pipeline' || prop === 'multi')
        return (...args: unknown[]) => {
          const batch = fn.apply(target, args) as { exec: (...a: unknown[]) => Promise<unknown> };
          const exec = batch.exec.bind(batch);
          batch.exec = (...a: unknown[]) => {
            const queued = (batch as unknown as { _queue?: { name: string }[] })._queue ?? [];
            const names = [...new Set(queued.map((c) => c.name.toUpperCase()))].join(',');
            return steps.run(kind, `${prop} of ${queued.length} (${names})`, () => exec(...a));
          };
          return batch;
        };
      if (isCall(prop))
        return (...args: unknown[]) =>
          steps.run(kind, scripts.has(prop) ? `script ${prop}` : prop.toUpperCase(), () =>
            Promise.resolve(fn.apply(target, args)),
          );
      return fn.bind(target);
    },
  });
}

// ---------------------------------------------------------------------------------------------
// LLMFlow as the exports reach it: every delivery, in order.

interface Delivery {
  /** When it went: `step 9` of the first attempt, `attempt 2`, `timer round 3`. */
  when: string;
  spans: CollectedSpan[];
}

const spansOf = (rs: ResourceSpans[]): CollectedSpan[] =>
  rs.flatMap((r) =>
    (r.scopeSpans ?? []).flatMap((ss) =>
      (ss.spans ?? []).map((s) => ({ ...s, attrs: attributesToRecord(s.attributes) })),
    ),
  );

// ---------------------------------------------------------------------------------------------
// A worker, wired as services/worker/src/index.ts wires it (with BRIDGE_FORWARD_METRICS: the
// scripts leave the batch's api_request events and the drawn roots as news, which the ledger
// takes in on the timer, here after each job).

interface Worker {
  store: LifecycleStore;
  closer: TurnCloser;
  ledger: LedgerStore;
  /** As BullMQ runs a job: `batch` is the job's id, the same on every attempt. */
  handle(request: ExportLogsRequest, batch: string): Promise<void>;
  disconnect(): void;
}

function startWorker(
  url: string,
  namespace: string,
  clock: ManualClock,
  steps: Steps,
  llmflow: Delivery[],
  phase: () => string,
): Worker {
  const client = new Redis(url, { maxRetriesPerRequest: null });
  client.on('error', () => {});
  const store = new LifecycleStore(stepped(client, steps, 'redis'), { namespace, clock });
  const ledger = new LedgerStore(stepped(client, steps, 'ledger'), { namespace });
  const exportSpans: SpanSink = async (rs, source) => {
    const spans = spansOf(rs);
    const roots = spans.filter((s) => !s.parentSpanId).length;
    const what = `export '${source}' of ${spans.length} spans (${roots} roots)`;
    await steps.run(
      'export',
      what,
      async () => {
        llmflow.push({ when: steps.counting ? `step ${steps.log.length}` : phase(), spans });
      },
      spans.map((s) => s.spanId),
    );
  };
  const closer = new TurnCloser({
    store,
    exportSpans,
    log: silentLogger,
    retryDelayMs: ROOT_RETRY_MS,
    ledger: true,
  });
  const deps: BatchProcessorDeps = { store, closer, exportSpans, log: silentLogger, ledgerNews: eventContributions };
  return {
    store,
    closer,
    ledger,
    async handle(request, batch) {
      await processBatch(deps, 'logs', request, batch);
      // A timer round takes the news in (the reconciler's), here after each job; one that fails leaves it to the next.
      await ledger.drain().catch(() => ledger.drain());
    },
    disconnect: () => client.disconnect(),
  };
}

// ---------------------------------------------------------------------------------------------
// One run of the scenario: the job until it succeeds (retried as BullMQ retries it), then the
// closer's timer rounds.

/** BullMQ's default lock: a dead worker's job is taken back once it ran out (its stalled check). */
const STALLED_MS = 30_000;
/** Timer rounds after the job: every ROOT_RETRY_MS, past a claim's lease (60 s). */
const ROUNDS = 16;
const MAX_ATTEMPTS = 5;

interface Outcome {
  steps: Step[];
  llmflow: Delivery[];
  stats: Record<string, number>;
  ledger: Pick<SessionLedger, 'session' | 'events' | 'turns'>[];
  /** Roots drawn by the time the jobs were done (before any timer round). */
  drawnInJob: number;
  /** Over every job. */
  attempts: number;
  /** Why the job could not succeed, if it could not. */
  gaveUp?: string;
}

async function runScenario(batches: ExportLogsRequest[], fault?: Fault): Promise<Outcome> {
  await peers.client.flushall();
  const url = peers.redis.url;
  const namespace = `fail-${randomUUID()}`;
  const clock = new ManualClock();
  const llmflow: Delivery[] = [];
  let phase = () => '';
  const first = new Steps(fault?.at === undefined ? undefined : fault);
  let steps = first;
  let worker = startWorker(url, namespace, clock, steps, llmflow, () => phase());
  /** The worker died: another takes the job back once BullMQ finds it stalled. */
  const retire = (old: Worker) => {
    old.disconnect();
    clock.advance(STALLED_MS);
    steps = new Steps();
    steps.counting = false;
    return startWorker(url, namespace, clock, steps, llmflow, () => phase());
  };
  let attempts = 0;
  let gaveUp: string | undefined;
  for (const [i, request] of batches.entries()) {
    const job = i + 1;
    first.job = job;
    let attempt = 0;
    let diedBeforeDone = false;
    phase = () => `job ${job} attempt ${attempt}`;
    for (;;) {
      attempt += 1;
      attempts += 1;
      if (attempt > MAX_ATTEMPTS) {
        gaveUp = `job ${job} still failing after ${MAX_ATTEMPTS} attempts`;
        break;
      }
      const outcome = await Promise.race([
        worker.handle(request, `${job}@${namespace}`).then(
          () => 'done' as const,
          (err: Error) => err,
        ),
        steps.killed,
      ]);
      if (first.firedAt !== undefined) first.counting = false;
      if (outcome === 'killed') {
        worker = retire(worker);
        continue;
      }
      if (outcome === 'done') {
        if (fault?.beforeDoneOfJob === job && !diedBeforeDone) {
          // Dead after the job's last step, before BullMQ marked it done: it runs again.
          diedBeforeDone = true;
          first.dead = true;
          first.counting = false;
          worker = retire(worker);
          continue;
        }
        break;
      }
      if (JOB_ANSWER[kindOf(outcome)] === 'fail') {
        gaveUp = `job ${job} went to the failed set: ${outcome.name}: ${outcome.message}`;
        break;
      }
      clock.advance(JOB_BACKOFF.delay * 2 ** (attempt - 1));
    }
    if (gaveUp) break;
  }
  // The jobs' steps end here: timer rounds and the reads below are no steps of theirs.
  first.counting = false;
  const drawnInJob = (await worker.store.stats())['drawn'] ?? 0;
  for (let i = 0; i < ROUNDS; i++) {
    phase = () => `timer round ${i + 1}`;
    clock.advance(ROOT_RETRY_MS);
    await worker.closer.closeDue();
  }
  const stats = await worker.store.stats();
  await worker.ledger.drain();
  // By session: which of two sessions had the latest news (the listing's order) is a matter of
  // milliseconds; and sums rounded, as news taken in one round or two adds them in another order.
  const ledger = (await worker.ledger.sessions())
    .map(({ session, events, turns }) => ({
      session,
      events: Object.fromEntries(
        Object.entries(events)
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([k, v]) => [k, Math.round(v * 1e9) / 1e9]),
      ),
      turns,
    }))
    .sort((a, b) => a.session.localeCompare(b.session));
  worker.disconnect();
  return { steps: first.log, llmflow, stats, ledger, drawnInJob, attempts, gaveUp };
}

// ---------------------------------------------------------------------------------------------
// Comparing a run with the clean one.

const label = (s: Step) => `step ${s.n} (job ${s.job}, ${s.kind === 'export' ? s.what : `${s.kind}: ${s.what}`})`;

/** What LLMFlow keeps of each span: its first copy. */
function kept(llmflow: Delivery[]): Map<string, CollectedSpan> {
  const out = new Map<string, CollectedSpan>();
  for (const d of llmflow) for (const s of d.spans) if (!out.has(s.spanId)) out.set(s.spanId, s);
  return out;
}

function sends(llmflow: Delivery[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const d of llmflow) for (const s of d.spans) out.set(s.spanId, (out.get(s.spanId) ?? 0) + 1);
  return out;
}

const brief = (s: CollectedSpan) =>
  `${s.name}${s.attrs['tool_name'] ? ` ${String(s.attrs['tool_name'])}` : ''}${s.attrs['gen_ai.agent.id'] ? ` of agent ${String(s.attrs['gen_ai.agent.id'])}` : ''} ${s.spanId}`;

/** Span ids whose re-send is no fault of the code: delivered by the failed attempt, after which nothing of the lifecycle took effect. */
function unrecordable(steps: Step[]): Set<string> {
  const out = new Set<string>();
  steps.forEach((s, i) => {
    if (s.kind !== 'export' || !s.took) return;
    if (steps.slice(i + 1).some((later) => later.kind === 'redis' && later.took)) return;
    for (const id of s.spanIds ?? []) out.add(id);
  });
  return out;
}

function differences(clean: Outcome, run: Outcome): string[] {
  const out: string[] = [];
  if (run.gaveUp) out.push(run.gaveUp);
  const want = kept(clean.llmflow);
  const got = kept(run.llmflow);
  for (const [id, s] of want) if (!got.has(id)) out.push(`LLMFlow lacks ${brief(s)}`);
  for (const [id, s] of got) if (!want.has(id)) out.push(`LLMFlow has an extra span: ${brief(s)}`);
  for (const [id, s] of want) {
    const g = got.get(id);
    if (!g) continue;
    const [a, b] = [treeOf([s])[id] as Record<string, unknown>, treeOf([g])[id] as Record<string, unknown>];
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of keys) {
      if (k === 'attrs') {
        const [x, y] = [a.attrs as Record<string, unknown>, b.attrs as Record<string, unknown>];
        for (const attr of new Set([...Object.keys(x), ...Object.keys(y)]))
          if (JSON.stringify(x[attr]) !== JSON.stringify(y[attr]))
            out.push(
              `${brief(s)}: ${attr} is ${JSON.stringify(y[attr])}, without the failure ${JSON.stringify(x[attr])}`,
            );
      } else if (JSON.stringify(a[k]) !== JSON.stringify(b[k]))
        out.push(`${brief(s)}: its ${k} is ${JSON.stringify(b[k])}, without the failure ${JSON.stringify(a[k])}`);
    }
  }
  // Sent as often as without the failure (a later copy that differs is one LLMFlow drops).
  const [n0, n1] = [sends(clean.llmflow), sends(run.llmflow)];
  const excused = unrecordable(run.steps);
  for (const [id, n] of n1) {
    const base = n0.get(id) ?? 0;
    if (n <= base) continue;
    const s = got.get(id)!;
    const copies = run.llmflow.flatMap((d) => d.spans.filter((x) => x.spanId === id).map((x) => ({ d, x })));
    const differ = copies.some(({ x }) => JSON.stringify(treeOf([x])) !== JSON.stringify(treeOf([s])));
    if (excused.has(id) && n === base + 1 && !differ) continue;
    const at = copies.map(({ d }) => d.when).join(', ');
    out.push(
      `${brief(s)} sent ${n} times (without the failure ${base}): at ${at}${differ ? '; the copies differ (LLMFlow keeps the first)' : ''}`,
    );
  }
  for (const k of new Set([...Object.keys(clean.stats), ...Object.keys(run.stats)]))
    if ((clean.stats[k] ?? 0) !== (run.stats[k] ?? 0))
      out.push(`Redis stats ${k} = ${run.stats[k] ?? 0}, without the failure ${clean.stats[k] ?? 0}`);
  if (JSON.stringify(run.ledger) !== JSON.stringify(clean.ledger))
    out.push(`the ledger is ${JSON.stringify(run.ledger)}, without the failure ${JSON.stringify(clean.ledger)}`);
  return out;
}

// ---------------------------------------------------------------------------------------------

const request = theBatch();

/** The batch cut in two where the background call has been launched: the second ends both turns. */
function cutAtLaunch(whole: ExportLogsRequest): ExportLogsRequest[] {
  const records = recordsOf(whole);
  const launched = records.findIndex(
    (r) => nameOf(r) === 'tool_result' && r.attributes!.some((a) => a.value?.stringValue === BG_CALL),
  );
  return [records.slice(0, launched + 1), records.slice(launched + 1)].map((part) => requestOf(whole, part));
}

const sessionOfBatch = (r: ExportLogsRequest) =>
  recordsOf(r)[0]!.attributes!.find((a) => a.key === 'session.id')!.value!.stringValue!;
const SESSION = sessionOfBatch(request);

/**
 * The batch with a second session on another shard, whose turn goes on (no answer has come): its
 * tool span goes at once, and its shard hands back nothing to commit (processor.ts commits the first's).
 */
function withAnotherShard(whole: ExportLogsRequest): ExportLogsRequest {
  const template = logsOf('json', 'tool');
  let other = `${SESSION}-2`;
  for (let n = 3; shardOf(other) === shardOf(SESSION); n++) other = `${SESSION}-${n}`;
  const promptId = randomUUID();
  const records = recordsOf(template)
    .filter((r) => nameOf(r) !== 'assistant_response')
    .map((r) => ({
      ...r,
      attributes: r.attributes!.map((a) =>
        a.key === 'session.id'
          ? { key: a.key, value: { stringValue: other } }
          : a.key === 'prompt.id'
            ? { key: a.key, value: { stringValue: promptId } }
            : a,
      ),
    }));
  assert.ok(
    records.some((r) => nameOf(r) === 'tool_result'),
    'a tool span drawn at once',
  );
  return requestOf(whole, [...recordsOf(whole), ...records]);
}

const DELIVERIES: { label: string; batches: ExportLogsRequest[] }[] = [
  { label: 'one batch', batches: [request] },
  { label: 'two batches (the second ends the turns)', batches: cutAtLaunch(request) },
  { label: 'one batch, with a session of another shard whose turn goes on', batches: [withAnotherShard(request)] },
];

for (const { label: delivery, batches } of DELIVERIES) {
  let clean: Outcome | undefined;
  /** The clean run, once: what every failing run must end as. */
  const cleanRun = async (): Promise<Outcome> => (clean ??= await runScenario(batches));

  test(`${delivery}, without a failure: the roots are drawn in the jobs, both subagents fold onto their calls, the events count once`, async () => {
    const c = await cleanRun();
    const again = await runScenario(batches);
    assert.deepEqual(
      again.steps.map(label),
      c.steps.map(label),
      'the same steps in the same order every run (each step is named by its number below)',
    );
    assert.equal(c.attempts, batches.length);
    assert.equal(c.gaveUp, undefined);
    const spans = [...kept(c.llmflow).values()].filter((s) => s.attrs['session.id'] === SESSION);
    const roots = spans.filter((s) => !s.parentSpanId);
    assert.equal(roots.length, 2, 'both turns have their root');
    assert.equal(c.drawnInJob, 2, 'both roots are drawn in the jobs, not by a timer');
    const call = (id: string) => spans.find((s) => s.name === 'claude_code.tool' && s.attrs['tool_use_id'] === id);
    assert.equal(
      call(FG_CALL)?.attrs['claude_code.subagent_completed.total_tokens'],
      '555',
      "the foreground call's totals",
    );
    assert.equal(
      call(BG_CALL)?.attrs['claude_code.subagent_completed.total_tokens'],
      '777',
      "the background call's totals",
    );
    for (const agent of [FG_AGENT, BG_AGENT])
      assert.ok(
        spans.some((s) => s.attrs['gen_ai.agent.id'] === agent),
        `the spans of subagent ${agent} are sent`,
      );
    assert.deepEqual(
      spans.filter((s) => s.name === 'claude_code.subagent_completed').map(brief),
      [],
      'totals are no rows of their own',
    );
    assert.equal(c.stats['late_events'] ?? 0, 0, 'nothing late');
    assert.deepEqual(
      [...sends(c.llmflow)].filter(([, n]) => n > 1),
      [],
      'each span is sent once',
    );
    // The ledger's sums are the batch's api_request events, each once.
    const sums: Record<string, number> = {};
    for (const e of eventContributions(request))
      for (const [k, v] of Object.entries(e.sums)) sums[k] = (sums[k] ?? 0) + v;
    const rounded = (o: Record<string, number>) =>
      Object.fromEntries(Object.entries(o).map(([k, v]) => [k, Math.round(v * 1e9) / 1e9]));
    const ledger = c.ledger.find((l) => l.session === SESSION);
    assert.deepEqual(rounded(ledger!.events), rounded(sums));
    assert.equal(ledger!.turns.drawn, 2);
  });

  /** Runs the delivery with each fault of `faults`, each a subtest named by its step. */
  const each = async (t: TestContext, faults: (c: Outcome) => { name: string; fault: Fault }[]) => {
    const c = await cleanRun();
    const runs = faults(c);
    let failed = 0;
    for (const { name, fault } of runs)
      await t.test(name, async () => {
        const run = await runScenario(batches, fault);
        const diffs = differences(c, run);
        if (diffs.length > 0) failed += 1;
        assert.deepEqual(diffs, [], `${fault.mode} at ${name} (${run.attempts} attempts):\n  ${diffs.join('\n  ')}`);
      });
    t.diagnostic(`${runs.length} steps, ${failed} end otherwise than without the failure`);
  };
  const atSteps = (mode: FaultMode, applies: (s: Step) => boolean) => (c: Outcome) =>
    c.steps.filter(applies).map((s) => ({ name: label(s), fault: { mode, at: s.n } }));

  test(`${delivery}: each Redis call refused once (it does not run), the job retried, ends as without the failure`, (t) =>
    each(
      t,
      atSteps('refuse', (s) => s.kind !== 'export'),
    ));

  test(`${delivery}: each Redis call run but its answer lost once, the job retried, ends as without the failure`, (t) =>
    each(
      t,
      atSteps('lose', (s) => s.kind !== 'export'),
    ));

  test(`${delivery}: each export failing once (LLMFlow took nothing), the job retried, ends as without the failure`, (t) =>
    each(
      t,
      atSteps('refuse', (s) => s.kind === 'export'),
    ));

  test(`${delivery}: the worker killed at each step, or after a job's last step before it was marked done, ends as without the failure`, (t) =>
    each(t, (c) => [
      ...atSteps('kill', () => true)(c),
      ...batches.map((_, i) => ({
        name: `after job ${i + 1}'s last step, before BullMQ marked it done`,
        fault: { mode: 'kill' as const, beforeDoneOfJob: i + 1 },
      })),
    ]));
}
