/**
 * Every Redis key the bridge uses is named here, and nowhere else.
 *
 * Redis Cluster runs a Lua script or a transaction only over keys of one hash slot, and a key's
 * slot is that of its hash tag (the part in `{...}`). So keys are grouped by tag:
 *
 * | group      | tag                 | keys                                                         |
 * |------------|---------------------|--------------------------------------------------------------|
 * | the queue  | `{ccbridge}`        | BullMQ's keys for the queues (`{ccbridge}:otlp-batches:*`,   |
 * |            |                     | `{ccbridge}:otlp-metrics:*`), the dead-letter store           |
 * |            |                     | (`{ccbridge}:dead-letter:*`) and Claude Code's metrics on     |
 * |            |                     | their way to LLMFlow (`{ccbridge}:metrics:*`)                 |
 * | a shard    | `{ccbridge:N}`      | its deadline index, stats, held spans' deadlines and batch    |
 * |            |                     | records, and every key of every session that hashes to shard  |
 * |            |                     | N: the session's prompts, sequence numbers, held events,      |
 * |            |                     | subagents, and its interactions' state; the news its scripts  |
 * |            |                     | leave for the sessions' ledgers                               |
 *
 * A session's keys all share its shard's tag, so one script applies a batch of a session's
 * events and reschedules its interactions atomically, on a single Redis or on a cluster; the
 * SHARDS tags spread sessions over a cluster's masters. SHARDS is fixed: changing it would move
 * sessions to other shards and strand their state. The scripts declare the shard's fixed keys
 * only, and build per-session keys from the templates below; each also declares its slot's fence
 * (scripts.ts fenceOf), so that a cluster runs none of them while their slot moves between masters
 * (a script run half way through a move would see the keys not moved yet as absent).
 */

export const NAMESPACE = 'ccbridge';
export const SHARDS = 16;

/** BullMQ's prefix for the queue: the tag keeps all of the queue's keys in one slot. */
export const queuePrefix = (namespace = NAMESPACE) => `{${namespace}}`;

/** The queue of received batches: events (logs) and spans. */
export const QUEUE_NAME = 'otlp-batches';
/**
 * The queue of received metrics: a queue of their own, so they never take the room of events
 * (their own byte bound and job count) and never hold back a turn's timers.
 */
export const METRICS_QUEUE_NAME = 'otlp-metrics';

/** What a queue's batches take in Redis, in bytes: the receiver's bound (BRIDGE_QUEUE_MAX_BYTES). */
export const queueBytesKey = (namespace = NAMESPACE, queue = QUEUE_NAME) => `${queuePrefix(namespace)}:${queue}:bytes`;

/** The prefix of BullMQ's job hashes (`prefix + id`): recount.lua reads what each job holds. */
export const queueJobKeyPrefix = (namespace = NAMESPACE, queue = QUEUE_NAME) => `${queuePrefix(namespace)}:${queue}:`;

/** One of BullMQ's keys for a queue, e.g. `wait`, `active`, `delayed`, `failed` (for status and tests). */
export const queueKey = (part: string, namespace = NAMESPACE, queue = QUEUE_NAME) =>
  `${queuePrefix(namespace)}:${queue}:${part}`;

/**
 * Claude Code's metrics on their way to LLMFlow, under the queue's tag (one slot: a script
 * takes a job's record and builds series keys beside it). `job` + job id: hash, what a metrics
 * job was turned into (its deltas, JSON) and how many of its requests LLMFlow took, so a retry
 * posts neither a point twice nor a different delta; and whether its counters were added to
 * their sessions' ledgers (`counted`). `series` + series id: string, the last
 * point of a cumulative series (`timeUnixNano value`), to turn the next into a delta.
 */
export const metricsKeys = (namespace = NAMESPACE) => ({
  job: `${queuePrefix(namespace)}:metrics:job:`,
  series: `${queuePrefix(namespace)}:metrics:series:`,
});

/**
 * Each session's ledger, under the queue's tag (one slot: a script updates a session's keys and
 * the indexes together): what its `api_request` events and Claude Code's counters add up to,
 * compared once both have arrived. Its events and roots drawn come through each shard's
 * `ledgerNews` (ShardKeys), its counters straight from the metrics jobs. `session` + id: hash,
 * the sums (`e|model|type`, `c|...`) and what was already reported (`r|...`), times and the
 * latest turn; `session` + id + `:seen`: set, the api_request events already counted; `session`
 * + id + `:turns`: set, the keys of the turns its events named; `session` + id + `:roots`: hash, trace id → whether the turn's root was drawn
 * complete (`1`, `0`, `?`).
 * `sessions`: sorted set, session → last activity (ms); `due`: sorted set, sessions with news
 * to compare → last activity (ms), or a lease.
 */
export const ledgerKeys = (namespace = NAMESPACE) => ({
  session: `${queuePrefix(namespace)}:session:`,
  sessions: `${queuePrefix(namespace)}:sessions`,
  due: `${queuePrefix(namespace)}:sessions:due`,
});

/** The shard of a session: FNV-1a (32 bit) of its id, so every process agrees. */
export function shardOf(session: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < session.length; i++) {
    h ^= session.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % SHARDS;
}

/**
 * The dead-letter store: spans LLMFlow refused for their content. `spans`: hash, span id →
 * JSON entry; `index`: sorted set, span id by when it was refused (ms). One tag, so both
 * change in one transaction on a cluster too.
 */
export const deadLetterKeys = (namespace = NAMESPACE) => ({
  spans: `${queuePrefix(namespace)}:dead-letter:spans`,
  index: `${queuePrefix(namespace)}:dead-letter:index`,
});

/** Per-id keys of a shard, as [before, after] the id: Lua builds `before .. id .. after`. */
export type KeyTemplate = readonly [string, string];

export interface ShardKeys {
  shard: number;
  /** The hash tag every key of the shard carries: one slot on a cluster. */
  tag: string;
  /** Sorted set: interaction key → when it is next looked at (ms): a deadline, or a lease. */
  deadlines: string;
  /** Hash of counters: drawn, incomplete, late events. */
  stats: string;
  /**
   * Stream: news for the sessions' ledgers (`events`: JSON, a batch's api_request events; `roots`:
   * JSON, roots drawn), written in the script that applies or commits them, taken into the
   * ledgers (under the queue's tag, so by another script) by the next round that reads it.
   */
  ledgerNews: string;
  /** Sorted set: holders of held spans, subagents and the main agent's Agent calls (`<TAB>session<TAB>agent`, `<TAB>session<TAB>call:<id>`; an older bridge's `session<TAB>call`) → when next looked at (ms). */
  callDeadlines: string;
  /** The templates the shard's scripts build per-session and per-interaction keys from. */
  templates: Record<PerIdKey, KeyTemplate>;
}

/**
 * `ix`: hash, an interaction's state; `text`: hash, its prompt and completion (apart, so that
 * deciding on its state does not read a 100 KB prompt); `contributions`, `events`: hashes, what its root will sum
 * and carry; `inputs`: hash, its main chain's calls and tool results by event.sequence (what its
 * LLM calls got as input, for calls in later batches and its root); `prompts`: sorted set, a session's prompts by time; `sequenceAt`: sorted set, the
 * `event.sequence` numbers seen in a session, by the ms each was logged at (member the number zero-padded, `:ms`), so a
 * turn's window is read without every process's numbers (`sequence`: an older bridge's, by number, member `seq:ms`); `waiting`: set, a session's
 * interactions waiting for a missing sequence number; `pending`: hash, spans of a session's
 * start-up events held for the prompt they lead to (an older bridge's: `-` once adopted); `adopted`: set, the ids of those
 * adopted (a copy is not adopted again). Subagents (agents.ts in claude-events):
 * `calls`, `agents`, `links`: hashes per session, its Agent tool calls, its subagents and which
 * call started which; `callLinks`: hash per session, the same links by call (a call starts one subagent); `agentSpans`: hash per `session/agent`, a subagent's spans held until it
 * is placed and may go (per `session/call:<id>`, an Agent call of the main agent: its tool span and its subagent's totals, held until they meet); `holding`: set per session, its subagents that hold spans (member '' once it lists them all); `open`: set per session, its
 * subagents not linked (`a:<id>`) and Agent calls not taken (`c:<id>`), what A.merge reads (member '' once it lists them all); `agentSent`: set per `session/agent`, the ids of its spans sent; `agentInputs`: hash per `session/agent`, its calls and tool results by
 * event.sequence (its LLM calls' inputs); `callSpans`: hash per session, where an older bridge held Agent calls'
 * tool spans (`span:<call>`) and their subagents' totals (`totals:<call>`), JSON or `-` once sent (moved to the call's `agentSpans`).
 */
export type PerIdKey =
  | 'ix'
  | 'text'
  | 'contributions'
  | 'events'
  | 'inputs'
  | 'prompts'
  | 'sequence'
  | 'sequenceAt'
  | 'waiting'
  | 'pending'
  | 'adopted'
  | 'calls'
  | 'agents'
  | 'links'
  | 'callLinks'
  | 'agentSpans'
  | 'holding'
  | 'open'
  | 'agentSent'
  | 'agentInputs'
  | 'callSpans';

/**
 * A batch's record in a shard (`applied` + batch id): string, what applying its turns there
 * handed back (batch.lua, T.apply), so a batch delivered again (a retry after a partial success)
 * changes nothing twice and is handed back the same work; marked committed, with the roots it
 * drew, once what it handed back was sent (commit.lua), so a retry after that sends nothing.
 */
export const appliedKey = (shard: ShardKeys, batch: string) => `${shard.tag}:applied:${batch}`;

export function shardKeys(shard: number, namespace = NAMESPACE): ShardKeys {
  const tag = `{${namespace}:${shard}}`;
  const per = (kind: string, suffix = ''): KeyTemplate => [`${tag}:${kind}:`, suffix];
  return {
    shard,
    tag,
    deadlines: `${tag}:deadlines`,
    stats: `${tag}:stats`,
    callDeadlines: `${tag}:calls:deadlines`,
    ledgerNews: `${tag}:ledger:news`,
    templates: {
      ix: per('ix'),
      text: per('ix', ':t'),
      contributions: per('ix', ':c'),
      events: per('ix', ':e'),
      inputs: per('ix', ':i'),
      prompts: per('session', ':prompts'),
      sequence: per('session', ':seq'),
      sequenceAt: per('session', ':seqat'),
      waiting: per('session', ':waiting'),
      pending: per('session', ':pending'),
      adopted: per('session', ':adopted'),
      calls: per('session', ':calls'),
      agents: per('session', ':agents'),
      links: per('session', ':links'),
      callLinks: per('session', ':calllinks'),
      agentSpans: per('agent', ':spans'),
      holding: per('session', ':holding'),
      open: per('session', ':open'),
      agentSent: per('agent', ':sent'),
      agentInputs: per('agent', ':inputs'),
      callSpans: per('session', ':callspans'),
    },
  };
}

/** A per-id key, as the scripts build it. */
export const keyOf = (template: KeyTemplate, id: string) => `${template[0]}${id}${template[1]}`;
