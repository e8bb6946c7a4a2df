/**
 * The race test's machinery (test/integration/race.test.ts): real Claude Code sessions captured
 * as OTLP logs requests (test/fixtures/sessions-<version>/, written by capture-sessions.ts),
 * copied with fresh ids, interleaved, cut into batches and posted, and each copy's trees in
 * LLMFlow compared with those of the same session processed alone.
 *
 * Randomness comes from ONE seeded generator per variant (sfc32), so a failing run is
 * repeated with its seed (RACE_SEED).
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';
import { Cluster, Redis } from 'ioredis';
import { queueKey } from '@ccbridge/redis';
import { LedgerStore, eventContributions, type SessionLedger } from '@ccbridge/sessions';
import type { ExportLogsRequest, LogRecord } from '@ccbridge/otlp';
import { post, querySqlite, startBridge, startRedis, waitFor, type LlmflowPeer } from './peers';

export const FIXTURES = path.join(__dirname, '..', 'fixtures', 'sessions-2.1.328');

/** A captured session, as stored in a fixture file (capture-sessions.ts writes them). */
export interface CapturedSession {
  claudeCode: string;
  scenario: string;
  description: string;
  /** The prompts, in order; `processes` Claude Code processes ran them. */
  prompts: string[];
  processes: number;
  /** The logs requests Claude Code sent, in arrival order. */
  requests: ExportLogsRequest[];
}

export function loadSessions(dir = FIXTURES): CapturedSession[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as CapturedSession);
}

// ---------------------------------------------------------------------------------------------
// The generator

/** A seeded generator (sfc32, 32-bit state words from the seed by splitmix32): floats in [0, 1). */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  constructor(readonly seed: number) {
    let s = seed >>> 0;
    const split = () => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    [this.a, this.b, this.c, this.d] = [split(), split(), split(), split()];
    for (let i = 0; i < 12; i++) this.next();
  }
  next(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) >>> 0;
    return t / 4294967296;
  }
  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  /** Fisher-Yates, in place. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [items[i], items[j]] = [items[j]!, items[i]!];
    }
    return items;
  }
  hex(n: number): string {
    let s = '';
    for (let i = 0; i < n; i++) s += '0123456789abcdef'[Math.floor(this.next() * 16)];
    return s;
  }
  alnum(n: number): string {
    const chars = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
    let s = '';
    for (let i = 0; i < n; i++) s += chars[Math.floor(this.next() * chars.length)];
    return s;
  }
  uuid(): string {
    const h = this.hex(32);
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${'89ab'[this.int(0, 3)]}${h.slice(17, 20)}-${h.slice(20)}`;
  }
}

/** The run's seed: RACE_SEED (a number) when set, else a fresh one, the same for every variant of a run. */
export const BASE_SEED = process.env.RACE_SEED
  ? Number(process.env.RACE_SEED) >>> 0
  : Math.floor(Math.random() * 2 ** 32);

/** A variant's seed: the run's, mixed with the variant's name (so each variant draws its own). */
export function seedFor(variant: string): { seed: number; base: number } {
  let h = BASE_SEED;
  for (let i = 0; i < variant.length; i++) h = Math.imul(h ^ variant.charCodeAt(i), 0x01000193) >>> 0;
  return { seed: h, base: BASE_SEED };
}

// ---------------------------------------------------------------------------------------------
// Copies with fresh ids

/**
 * The attributes whose values make a session's spans and state its own: the session, its
 * prompts (turns), API requests, tool calls, subagents and messages. Each value is replaced
 * wherever it occurs in any string of the copy (a <task-notification> prompt names the agent
 * and the tool call; a tool's input may name others).
 */
export const ID_KEYS = [
  'session.id',
  'prompt.id',
  'request_id',
  'tool_use_id',
  'agent_id',
  'parent_agent_id',
  'message.uuid',
];

/** A fresh id of the same form as `old`: a UUID, an agent id (`a` + 16 hex), `prefix_...`, or hex. */
function freshId(old: string, rng: Rng): string {
  if (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(old)) return rng.uuid();
  if (/^a[0-9a-f]{16}$/.test(old)) return `a${rng.hex(16)}`;
  const prefixed = /^([a-z]+)_/.exec(old);
  if (prefixed) return `${prefixed[1]}_01${rng.alnum(22)}`;
  return rng.hex(old.length);
}

type AnyValue = Record<string, unknown>;

function* attributeLists(request: ExportLogsRequest): Generator<{ key: string; value?: AnyValue }[]> {
  for (const rl of request.resourceLogs ?? []) {
    if (rl.resource?.attributes) yield rl.resource.attributes as { key: string; value?: AnyValue }[];
    for (const sl of rl.scopeLogs ?? [])
      for (const r of sl.logRecords ?? []) if (r.attributes) yield r.attributes as { key: string; value?: AnyValue }[];
  }
}

/** Every string in a JSON value, rewritten by `f`. */
function mapStrings(v: unknown, f: (s: string) => string): unknown {
  if (typeof v === 'string') return f(v);
  if (Array.isArray(v)) return v.map((x) => mapStrings(x, f));
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, mapStrings(x, f)]));
  return v;
}

export interface SessionCopy {
  /** `scenario#n`. */
  label: string;
  scenario: string;
  /** The copy's session id. */
  session: string;
  /** Its requests, in captured order, with its ids. */
  requests: ExportLogsRequest[];
  /** Old id → new. */
  ids: Map<string, string>;
}

/** The session with every id of ID_KEYS replaced by a fresh one, consistently across its requests. */
export function copySession(s: CapturedSession, n: number | string, rng: Rng): SessionCopy {
  const ids = new Map<string, string>();
  for (const req of s.requests)
    for (const list of attributeLists(req))
      for (const a of list) {
        const v = a.value?.stringValue;
        if (ID_KEYS.includes(a.key) && typeof v === 'string' && v && !ids.has(v)) ids.set(v, freshId(v, rng));
      }
  const escaped = [...ids.keys()]
    .sort((a, b) => b.length - a.length)
    .map((k) => k.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  const pattern = new RegExp(`(?<![A-Za-z0-9_-])(?:${escaped.join('|')})(?![A-Za-z0-9_-])`, 'g');
  const rewrite = (text: string) => text.replace(pattern, (m) => ids.get(m)!);
  const requests = s.requests.map((r) => mapStrings(r, rewrite) as ExportLogsRequest);
  const session = [...attributeLists(requests[0]!)].flat().find((a) => a.key === 'session.id')!.value!
    .stringValue as string;
  return { label: `${s.scenario}#${n}`, scenario: s.scenario, session, requests, ids };
}

// ---------------------------------------------------------------------------------------------
// Records, batches

/** One log record with where it came from (its request's resource and scope kept as they were). */
export interface Item {
  copy: number;
  request: number;
  resource: unknown;
  scope: unknown;
  record: LogRecord;
}

export function itemsOf(copy: SessionCopy, index: number): Item[] {
  const out: Item[] = [];
  copy.requests.forEach((req, r) => {
    for (const rl of req.resourceLogs ?? [])
      for (const sl of rl.scopeLogs ?? [])
        for (const record of sl.logRecords ?? [])
          out.push({ copy: index, request: r, resource: rl.resource, scope: sl.scope, record });
  });
  return out;
}

/** A batch as one OTLP request: its records grouped by resource, then scope (first appearance order). */
export function requestOfItems(items: Item[]): ExportLogsRequest {
  const resources = new Map<unknown, Map<unknown, LogRecord[]>>();
  for (const it of items) {
    let scopes = resources.get(it.resource);
    if (!scopes) resources.set(it.resource, (scopes = new Map<unknown, LogRecord[]>()));
    let records = scopes.get(it.scope);
    if (!records) scopes.set(it.scope, (records = []));
    records.push(it.record);
  }
  return {
    resourceLogs: [...resources].map(([resource, scopes]) => ({
      ...(resource ? { resource } : {}),
      scopeLogs: [...scopes].map(([scope, logRecords]) => ({ ...(scope ? { scope } : {}), logRecords })),
    })),
  };
}

export interface Batch {
  items: Item[];
  /** Posted a second time (a duplicate of an earlier batch). */
  duplicate?: boolean;
}

/** Cuts a list of records into batches of random sizes in [1, max]. */
export function cut(items: Item[], rng: Rng, max: number): Batch[] {
  const out: Batch[] = [];
  for (let i = 0; i < items.length;) {
    const n = rng.int(1, max);
    out.push({ items: items.slice(i, i + n) });
    i += n;
  }
  return out;
}

/** Each list's items in their order, the lists merged at random (each next item from a list drawn by what it has left). */
export function mergeInOrder<T>(lists: T[][], rng: Rng): T[] {
  const at = lists.map(() => 0);
  const out: T[] = [];
  let left = lists.reduce((n, l) => n + l.length, 0);
  while (left > 0) {
    let pick = rng.int(0, left - 1);
    const i = lists.findIndex((l, k) => (pick -= l.length - at[k]!) < 0);
    out.push(lists[i]![at[i]!++]!);
    left--;
  }
  return out;
}

/** A tenth (rounded up) of the batches again, each at a random later place. */
export function withDuplicates(batches: Batch[], rng: Rng, share = 0.1): Batch[] {
  const out = [...batches];
  const picks = rng.shuffle(batches.map((_, i) => i)).slice(0, Math.ceil(batches.length * share));
  for (const i of picks) {
    const from = out.indexOf(batches[i]!);
    out.splice(rng.int(from + 1, out.length), 0, { items: batches[i]!.items, duplicate: true });
  }
  return out;
}

/** Posts the batches as OTLP/JSON to `url`/v1/logs by `posters` concurrent posters, in list order. */
export async function postBatches(url: string, batches: Batch[], posters: number): Promise<void> {
  let next = 0;
  const bodies = batches.map((b) => Buffer.from(JSON.stringify(requestOfItems(b.items))));
  await Promise.all(
    Array.from({ length: posters }, async () => {
      while (next < bodies.length) {
        const i = next++;
        const r = await post(`${url}/v1/logs`, bodies[i]!, 'application/json');
        if (r.status !== 200) throw new Error(`batch ${i}: HTTP ${r.status} ${r.body.toString()}`);
      }
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// Trees in LLMFlow

export interface Row {
  id: string;
  trace_id: string;
  parent_id: string | null;
  span_name: string;
  session: string | null;
  type: string | null;
  tool: string | null;
  hook: string | null;
  complete: number | string | null;
  /** A root's prompt (gen_ai.prompt), its first 200 characters. */
  prompt: string | null;
}

const ROWS_SQL = `SELECT id, trace_id, parent_id, span_name,
  coalesce(json_extract(attributes, '$."session.id"'), json_extract(attributes, '$."gen_ai.conversation.id"')) AS session,
  json_extract(attributes, '$."span.type"') AS type,
  json_extract(attributes, '$."gen_ai.tool.name"') AS tool,
  json_extract(attributes, '$."hook_name"') AS hook,
  json_extract(attributes, '$."claude_code.interaction.complete"') AS complete,
  CASE WHEN parent_id IS NULL THEN substr(json_extract(attributes, '$."gen_ai.prompt"'), 1, 200) END AS prompt
  FROM traces`;

/** Every span LLMFlow holds, the fields the shapes need only. */
export async function readRows(llmflow: LlmflowPeer): Promise<Row[]> {
  return (await querySqlite(path.join(llmflow.dataDir, 'data.db'), ROWS_SQL)) as Row[];
}

export interface Shape {
  /** Each trace rendered as an indented tree (ids left out), the traces sorted. */
  traces: string[];
  roots: number;
  spans: number;
  /** Spans whose parent is not in LLMFlow. */
  orphans: string[];
  /** Spans per label, as `label: n` lines. */
  counts: string[];
}

/** A root's prompt, for its label: its first line, ids masked (a copy's differ from the reference's), cut short. */
const promptLabel = (prompt: string | null) => {
  if (prompt === null) return undefined;
  const line = prompt
    .split('\n')
    .filter((l) => l.trim())
    .slice(0, prompt.startsWith('<task-notification>') ? 1 : 2)
    .join(' ')
    .replace(/\b(?:[a-z]+_[A-Za-z0-9_]{8,}|a?[0-9a-f]{8,}(?:-[0-9a-f]{4,})*)\b/g, '<id>');
  return `prompt=${JSON.stringify(line.length > 40 ? `${line.slice(0, 40)}...` : line)}`;
};

const labelOf = (r: Row) =>
  [
    r.span_name,
    r.tool && `tool=${r.tool}`,
    r.hook && `hook=${r.hook}`,
    r.type === 'event' && '(event)',
    !r.parent_id && `complete=${r.complete === 1 || r.complete === 'true' ? 'yes' : r.complete === null ? '?' : 'no'}`,
    !r.parent_id && promptLabel(r.prompt),
  ]
    .filter(Boolean)
    .join(' ');

/** The shapes of the traces of each session (every span of a trace any of whose spans names the session). */
export function shapesBySession(rows: Row[], sessions: Iterable<string>): Map<string, Shape> {
  const wanted = new Set(sessions);
  const traceSession = new Map<string, string>();
  for (const r of rows) if (r.session && wanted.has(r.session)) traceSession.set(r.trace_id, r.session);
  const bySession = new Map<string, Row[]>();
  for (const r of rows) {
    const s = traceSession.get(r.trace_id);
    if (s) bySession.set(s, [...(bySession.get(s) ?? []), r]);
  }
  const out = new Map<string, Shape>();
  for (const s of wanted) out.set(s, shapeOf(bySession.get(s) ?? []));
  return out;
}

export function shapeOf(rows: Row[]): Shape {
  const byId = new Map(rows.map((r) => [r.id, r]));
  const children = new Map<string, Row[]>();
  for (const r of rows) if (r.parent_id) children.set(r.parent_id, [...(children.get(r.parent_id) ?? []), r]);
  const render = (r: Row, depth: number): string =>
    [`${'  '.repeat(depth)}${labelOf(r)}`, ...(children.get(r.id) ?? []).map((c) => render(c, depth + 1)).sort()].join(
      '\n',
    );
  const tops = rows.filter((r) => !r.parent_id || !byId.has(r.parent_id));
  const traces = tops
    .map((r) => (r.parent_id ? `[ORPHAN, its parent not in LLMFlow] ${render(r, 0)}` : render(r, 0)))
    .sort();
  const counts = new Map<string, number>();
  for (const r of rows) counts.set(labelOf(r), (counts.get(labelOf(r)) ?? 0) + 1);
  return {
    traces,
    roots: rows.filter((r) => !r.parent_id).length,
    spans: rows.length,
    orphans: rows.filter((r) => r.parent_id && !byId.has(r.parent_id)).map(labelOf),
    counts: [...counts].map(([k, n]) => `${k}: ${n}`).sort(),
  };
}

/** The same trees (an orphan is a tree of its own, marked: the reference's must be the copy's too). */
export const sameShape = (a: Shape, b: Shape) => JSON.stringify(a.traces) === JSON.stringify(b.traces);

/** A line diff (longest common subsequence): ` ` both, `-` only `a`, `+` only `b`. */
export function lineDiff(a: string[], b: string[]): string[] {
  const lcs = a.map(() => new Array<number>(b.length + 1).fill(0));
  lcs.push(new Array<number>(b.length + 1).fill(0));
  for (let i = a.length - 1; i >= 0; i--)
    for (let j = b.length - 1; j >= 0; j--)
      lcs[i]![j] = a[i] === b[j] ? lcs[i + 1]![j + 1]! + 1 : Math.max(lcs[i + 1]![j]!, lcs[i]![j + 1]!);
  const out: string[] = [];
  let [i, j] = [0, 0];
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) {
      out.push(`  ${a[i++]}`);
      j++;
    } else if (j < b.length && (i >= a.length || lcs[i]![j + 1]! >= lcs[i + 1]![j]!)) out.push(`+ ${b[j++]}`);
    else out.push(`- ${a[i++]}`);
  }
  return out;
}

/**
 * What differs, for a failure message: roots, spans, orphans and the per-label counts that
 * differ; then each trace of the reference the copy lacks beside the copy's trace most like it
 * (a line diff: `-` the reference's, `+` the copy's), and the copy's traces left over.
 */
export function diffShapes(reference: Shape, got: Shape): string {
  const left = [...reference.traces];
  const extra: string[] = [];
  for (const t of got.traces) {
    const i = left.indexOf(t);
    if (i >= 0) left.splice(i, 1);
    else extra.push(t);
  }
  const countsOf = (s: Shape) => new Map(s.counts.map((c) => [c.slice(0, c.lastIndexOf(':')), c]));
  const [rc, gc] = [countsOf(reference), countsOf(got)];
  const counts = [...new Set([...rc.keys(), ...gc.keys()])]
    .filter((k) => rc.get(k) !== gc.get(k))
    .map((k) => `    ${k}: ${rc.get(k)?.split(': ')[1] ?? 0} -> ${gc.get(k)?.split(': ')[1] ?? 0}`);
  const blocks: string[] = [];
  for (const t of left) {
    const lines = t.split('\n');
    // The copy's trace sharing most lines with it (its root's line first).
    let best = -1;
    let bestScore = 0;
    extra.forEach((e, k) => {
      const other = e.split('\n');
      const score = (other[0] === lines[0] ? 1000 : 0) + lines.filter((l) => other.includes(l)).length;
      if (score > bestScore) [best, bestScore] = [k, score];
    });
    const pair = best >= 0 ? extra.splice(best, 1)[0]!.split('\n') : [];
    blocks.push(
      best >= 0
        ? "  a trace of the reference (-) and the copy's most like it (+):"
        : '  a trace of the reference the copy lacks:',
      ...lineDiff(lines, pair).map((l) => `    ${l}`),
    );
  }
  for (const e of extra)
    blocks.push('  a trace of the copy the reference lacks:', ...e.split('\n').map((l) => `    + ${l}`));
  return [
    `  roots ${reference.roots} -> ${got.roots}, spans ${reference.spans} -> ${got.spans}, orphans ${got.orphans.length}${got.orphans.length ? ` (${got.orphans.join(', ')})` : ''}`,
    ...(counts.length ? ['  counts that differ (reference -> copy):', ...counts] : []),
    ...blocks,
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// The ledger

/** Every session's ledger, once the workers took in the news the batches left (on their timers). */
export async function ledgersOf(client: Redis | Cluster, limit = 10_000): Promise<SessionLedger[]> {
  const ledger = new LedgerStore(client);
  await waitFor('the ledgers took in their news', async () => (await ledger.newsWaiting()) === 0, 30_000, 100);
  return ledger.sessions(limit);
}

/** A copy's api_request events as the ledger should count them: sums per `model|what`, each event once. */
export function expectedLedger(copy: SessionCopy): Record<string, number> {
  const seen = new Set<string>();
  const sums: Record<string, number> = {};
  for (const req of copy.requests)
    for (const c of eventContributions(req)) {
      if (c.session !== copy.session || seen.has(c.id)) continue;
      seen.add(c.id);
      for (const [k, v] of Object.entries(c.sums)) sums[k] = (sums[k] ?? 0) + v;
    }
  return sums;
}

/** Sums compared to 1e-9 (cost adds up in another order when events arrive in another). */
export const roundSums = (s: Record<string, number>): Record<string, number> =>
  Object.fromEntries<number>(
    Object.entries(s)
      .filter(([, v]) => v !== 0)
      .map(([k, v]): [string, number] => [k, Math.round(v * 1e9) / 1e9])
      .sort(([a], [b]) => a.localeCompare(b)),
  );

// ---------------------------------------------------------------------------------------------
// The queue

export type Client = Redis | Cluster;

export interface QueueState {
  /** Batches waiting or in progress (BullMQ's wait, active, paused, prioritized). */
  pending: number;
  /** Batches waiting for a retry after a failure (delayed). */
  retrying: number;
  /** Batches that used up their attempts. */
  failed: number;
}

export async function queueState(client: Client): Promise<QueueState> {
  const [wait, active, paused, prioritized, delayed, failed] = await Promise.all([
    client.llen(queueKey('wait')),
    client.llen(queueKey('active')),
    client.llen(queueKey('paused')),
    client.zcard(queueKey('prioritized')),
    client.zcard(queueKey('delayed')),
    client.zcard(queueKey('failed')),
  ]);
  return { pending: wait + active + paused + prioritized, retrying: delayed, failed };
}

/** Why the batches retrying or failed did: each distinct failedReason, with how many. */
export async function failureReasons(client: Client): Promise<string[]> {
  const ids = [
    ...(await client.zrange(queueKey('delayed'), 0, -1)),
    ...(await client.zrange(queueKey('failed'), 0, -1)),
  ];
  const reasons = new Map<string, number>();
  for (const id of ids) {
    const [atm, attemptsMade, reason] = await client.hmget(queueKey(id), 'atm', 'attemptsMade', 'failedReason');
    const key = `${reason ?? '?'} (attempts made: ${atm ?? attemptsMade ?? 0})`;
    reasons.set(key, (reasons.get(key) ?? 0) + 1);
  }
  return [...reasons].map(([r, n]) => `${n} batch(es): ${r}`);
}

/** Waits until no batch waits or runs, nor waits for a retry; past `timeoutMs`, resolves with what is left. */
export async function drained(client: Client, what: string, timeoutMs = 90_000): Promise<QueueState> {
  let last: QueueState = { pending: -1, retrying: -1, failed: -1 };
  try {
    return await waitFor(
      `${what}: every batch processed`,
      async () => {
        last = await queueState(client);
        return last.pending === 0 && last.retrying === 0 ? last : undefined;
      },
      timeoutMs,
      200,
    );
  } catch (err) {
    if (!/timed out/.test(String(err)) || last.pending > 0) throw err;
    return last;
  }
}

// ---------------------------------------------------------------------------------------------
// The reference

/** The turns of a session: its distinct prompt.ids, each a trace of its own. */
export function turnsOf(s: CapturedSession | SessionCopy): number {
  const prompts = new Set<string>();
  for (const req of s.requests)
    for (const rl of req.resourceLogs ?? [])
      for (const sl of rl.scopeLogs ?? [])
        for (const r of sl.logRecords ?? [])
          for (const a of r.attributes ?? [])
            if (a.key === 'prompt.id' && a.value?.stringValue) prompts.add(a.value.stringValue);
  return prompts.size;
}

/** A session's trees and ledger as the bridge makes them from it processed alone. */
export interface Reference {
  shape: Shape;
  ledger: SessionLedger;
}

/**
 * The references, by scenario: each session alone (its own fresh ids), one batch per captured
 * request, in captured order, by one worker at concurrency 1, on a single redis-server of its
 * own, into `llmflow`; `timeoutMs`: how long the trees may take to settle once processed;
 * `root`: the checkout whose bridge runs (startBridge's; this one when undefined).
 */
export async function processAlone(
  llmflow: LlmflowPeer,
  sessions: CapturedSession[],
  timeoutMs: number,
  root?: string,
): Promise<Map<string, Reference>> {
  const references = new Map<string, Reference>();
  const redis = await startRedis();
  const client = new Redis(redis.url, { maxRetriesPerRequest: null });
  const bridge = await startBridge(
    { REDIS_URL: redis.url, LLMFLOW_URL: llmflow.url, BRIDGE_WORKER_CONCURRENCY: '1' },
    { root },
  );
  try {
    const rng = new Rng(1);
    const copies = sessions.map((s) => copySession(s, 'reference', rng));
    for (const c of copies) {
      for (const req of c.requests)
        await postBatches(bridge.url, [{ items: itemsOf({ ...c, requests: [req] }, 0) }], 1);
      const q = await drained(client, `reference ${c.label}`);
      assert.equal(q.retrying + q.failed, 0, `reference ${c.label}: ${(await failureReasons(client)).join('; ')}`);
    }
    // Every turn's root drawn, no orphans, and nothing changing any more.
    let stableSince = Date.now();
    let last = '';
    let current = new Map<string, Shape>();
    const unwhole = () =>
      copies
        .filter((c) => current.get(c.session)!.roots !== turnsOf(c))
        .map((c) => {
          const s = current.get(c.session)!;
          return `${c.label}: ${s.roots} roots of ${turnsOf(c)} turns, orphans: ${s.orphans.join(', ') || 'none'}\n${s.traces.join('\n')}`;
        });
    const shapes = await waitFor(
      'the reference trees: every turn a root, unchanged for 3 s',
      async () => {
        current = shapesBySession(
          await readRows(llmflow),
          copies.map((c) => c.session),
        );
        const text = JSON.stringify([...current]);
        if (text !== last) [last, stableSince] = [text, Date.now()];
        return unwhole().length === 0 && Date.now() - stableSince >= 3_000 ? current : undefined;
      },
      timeoutMs,
      500,
    ).catch((err: unknown) => {
      throw new Error(`${String(err)}; not whole:\n${unwhole().join('\n')}`);
    });
    const ledgers = await ledgersOf(client);
    for (const c of copies) {
      const ledger = ledgers.find((l) => l.session === c.session);
      assert.ok(ledger, `reference ${c.label}: a ledger`);
      assert.deepEqual(roundSums(ledger.events), roundSums(expectedLedger(c)), `reference ${c.label}: ledger events`);
      references.set(c.scenario, { shape: shapes.get(c.session)!, ledger });
    }
    assert.equal((await queueState(client)).failed, 0, 'reference: no failed batch');
  } finally {
    client.disconnect();
    await bridge.stop();
    await redis.stop();
  }
  return references;
}
