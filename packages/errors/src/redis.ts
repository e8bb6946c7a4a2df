/**
 * Redis's failures, typed once: what ioredis throws, by what it is, mapped to a kind (kinds.ts).
 * Every stage calls Redis through ioredis and lets its errors through untouched, so this is
 * the one place they are typed; kindOf asks it before falling back to its default. It reads the
 * error's name and Redis's error code, not ioredis's classes, so @ccbridge/errors depends on
 * nothing (test/unit/redis-errors.test.ts checks it against the errors a real Redis gives).
 *
 * | what ioredis throws                                                  | kind         | why                                  |
 * |----------------------------------------------------------------------|--------------|--------------------------------------|
 * | ReplyError `OOM command not allowed ...` (maxmemory, noeviction)     | backpressure | Redis is full: wait until it drains  |
 * | ReplyError of a Lua script refused by a cluster node: `ERR Script     | retryable    | a slot is migrating or moved (a key  |
 * | attempted to access a non local key in a cluster node ...` (a key it |              | the script builds is not here now),  |
 * | does not declare, absent here while its slot migrates), `ERR Script  |              | or the cluster is down: it will be   |
 * | attempted to execute a command while the cluster is down ...`        |              | up, or the slot settled              |
 * | ReplyError of a Lua script: `ERR user_script:N: ...`, `ERR Error     | permanent    | a script fails the same way on the   |
 * | running script ...`, `... script: <sha>, on @user_script:N.`         |              | same input (not OOM, BUSY, LOADING)  |
 * | ReplyError `WRONGTYPE ...`                                           | permanent    | the key holds something else: no     |
 * |                                                                      |              | retry changes that                   |
 * | ReplyError `LOADING`, `BUSY`, `MASTERDOWN`, `READONLY`, `CLUSTERDOWN`, | retryable  | the server or cluster is not ready   |
 * | `TRYAGAIN`, `MOVED`, `ASK` (ioredis follows these itself first; to  | retryable    | now; it will be                      |
 * | EVALSHA too, for its declared keys; inside a script they are the     |              |                                      |
 * | `non local key` above)                                               |              |                                      |
 * | `Too many Cluster redirections. Last error: ...` (ioredis gave up    | retryable    | a slot still migrating (TRYAGAIN)    |
 * | following MOVED, ASK or TRYAGAIN)                                    |              |                                      |
 * | MaxRetriesPerRequestError, AbortError (`Command aborted due to       | retryable    | the connection failed under the      |
 * | connection close`), ClusterAllFailedError, `Connection is closed.`,  |              | command                              |
 * | `Stream isn't writeable ...`, `None of startup nodes is available`,  |              |                                      |
 * | socket errors (ECONNREFUSED, ECONNRESET, ETIMEDOUT, EPIPE, ...)      |              |                                      |
 * | `Command timed out` (a producer's command unanswered, connect.ts)     | retryable    | Redis away or stalled under it       |
 *
 * Any other reply (an `ERR` of a command, NOAUTH, NOPERM: a setting to fix) is left to kindOf's
 * default, retryable: the batch waits in the queue until the operator fixes it.
 */
import type { ErrorKind } from './error-kind';

/** Redis's error codes (the reply's first word) with a kind of their own. */
const REPLY_KINDS: Record<string, ErrorKind> = {
  OOM: 'backpressure',
  WRONGTYPE: 'permanent',
  LOADING: 'retryable',
  BUSY: 'retryable',
  MASTERDOWN: 'retryable',
  READONLY: 'retryable',
  CLUSTERDOWN: 'retryable',
  TRYAGAIN: 'retryable',
  MOVED: 'retryable',
  ASK: 'retryable',
};

/**
 * A Lua script's error, as Redis reports it: its run-time errors (`ERR user_script:N: ...` in
 * Redis 7, `ERR Error running script ...` before), and the error of a command it called, which
 * Redis 7 ends with `script: <sha>, on @user_script:N.` (that error's own code, OOM say, is read
 * first).
 */
const SCRIPT_ERROR = /^ERR (user_script:\d+:|Error running script)| on @user_script:\d+\.$/;

/**
 * A script a cluster node refused mid-run because a key it touched is not the node's now: one it
 * does not declare in KEYS, absent here while its slot migrates (or on another node), or any key
 * while the cluster is down. As Redis 7.0 says it (test/unit/redis-errors.test.ts gets it from a
 * real cluster): `ERR Script attempted to access a non local key in a cluster node script: <sha>,
 * on @user_script:N.` and `ERR Script attempted to execute a command while the cluster is down
 * script: ...`; Redis 6 says `... Lua script attempted to access a non local key in a cluster
 * node`. Once the slot has moved (or the cluster is up) the same script runs: retryable. A script
 * whose keys never share a slot fails so on every attempt and ends in the failed set all the same.
 */
const SCRIPT_CLUSTER_ERROR =
  /[Ss]cript attempted to (access a non local key in a cluster node|execute a (write )?command while the cluster is down)/;

/** ioredis's errors of a connection that failed under a command. */
const CONNECTION_ERRORS = new Set([
  'MaxRetriesPerRequestError',
  'AbortError',
  'InterruptError',
  'ClusterAllFailedError',
]);
const CONNECTION_MESSAGES = [
  'Connection is closed.',
  "Stream isn't writeable",
  "Cluster isn't ready",
  'None of startup nodes is available',
  // ioredis gave up following a cluster's redirections (a slot still migrating: TRYAGAIN, ASK).
  'Too many Cluster redirections',
  // A producer's command that got no reply in time (connect.ts commandTimeout).
  'Command timed out',
];
const SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/** The kind of a Redis failure (the table above); undefined for anything else. */
export function redisKindOf(err: unknown): ErrorKind | undefined {
  if (!(err instanceof Error)) return undefined;
  if (err.name === 'ReplyError') {
    const code = err.message.split(' ', 1)[0]!;
    if (Object.hasOwn(REPLY_KINDS, code)) return REPLY_KINDS[code];
    if (SCRIPT_CLUSTER_ERROR.test(err.message)) return 'retryable';
    if (SCRIPT_ERROR.test(err.message)) return 'permanent';
    return undefined;
  }
  if (CONNECTION_ERRORS.has(err.name)) return 'retryable';
  if (CONNECTION_MESSAGES.some((m) => err.message.startsWith(m))) return 'retryable';
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && SOCKET_CODES.has(code)) return 'retryable';
  return undefined;
}
