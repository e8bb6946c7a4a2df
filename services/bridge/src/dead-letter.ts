#!/usr/bin/env node
/**
 * The operator's view of the dead-letter store (spans LLMFlow refused for their content):
 *
 *   npm run dead-letter -- list [--limit N]        one JSON line per span: id, name, reason, when
 *   npm run dead-letter -- show SPAN_ID...         the whole entry, the span included
 *   npm run dead-letter -- replay [--limit N | SPAN_ID...]   send again; those taken leave the store
 *   npm run dead-letter -- drop SPAN_ID... | --all
 *
 * It reads the bridge's own settings (REDIS_URL, REDIS_CLUSTER, LLMFLOW_URL, ...) from the
 * environment. Exit status: 0 done, 1 LLMFlow or Redis unavailable, 2 bad usage or setting.
 */
import { ConfigError, DEFAULT_REDIS_URL, loadConfig } from '@ccbridge/config';
import { DeadLetterStore } from '@ccbridge/dead-letter';
import { LlmflowExporter } from '@ccbridge/llmflow';
import { createLogger } from '@ccbridge/log';
import { connectRedis } from '@ccbridge/redis';

const GIVE_UP_MS = 30_000;
const USAGE = 'usage: dead-letter list [--limit N] | show ID... | replay [--limit N | ID...] | drop ID... | --all';

function fail(message: string, code: number): never {
  process.stderr.write(`dead-letter: ${message}\n`);
  process.exit(code);
}

function parseArgs(argv: string[]): { command: string; ids: string[]; limit: number; all: boolean } {
  const [command = '', ...rest] = argv;
  const ids: string[] = [];
  let limit = 100;
  let all = false;
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!;
    if (arg === '--limit') {
      limit = Number(rest[++i]);
      if (!Number.isSafeInteger(limit) || limit < 1) fail(`--limit takes a whole number above 0\n${USAGE}`, 2);
    } else if (arg === '--all') all = true;
    else if (/^[0-9a-f]{16}$/i.test(arg)) ids.push(arg.toLowerCase());
    else fail(`${JSON.stringify(arg)} is not a span id (16 hex digits) or an option\n${USAGE}`, 2);
  }
  return { command, ids, limit, all };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message, 2);
    throw err;
  }
  const log = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel);
  // Commands wait for the connection; a tool, not a service: it gives up after a while.
  const redis = connectRedis({ url: config.redisUrl ?? DEFAULT_REDIS_URL, cluster: config.redisCluster }, 'consumer');
  redis.on('error', () => undefined);
  setTimeout(() => fail(`Redis at ${config.redisUrl ?? DEFAULT_REDIS_URL} did not answer within ${GIVE_UP_MS / 1000} s`, 1), GIVE_UP_MS).unref();
  const store = new DeadLetterStore(redis, { maxEntries: config.deadLetterMax, log });
  const out = (value: unknown) => process.stdout.write(`${JSON.stringify(value)}\n`);
  try {
    switch (args.command) {
      case 'list':
        for (const e of await store.list({ limit: args.limit })) {
          out({ spanId: e.spanId, traceId: e.traceId, name: e.name, source: e.source, at: new Date(e.at).toISOString(), reason: e.reason });
        }
        out({ total: await store.count() });
        break;
      case 'show':
        for (const e of await store.list({ ids: args.ids })) out(e);
        break;
      case 'replay': {
        const exporter = new LlmflowExporter({ url: config.llmflowUrl, timeoutMs: config.exportTimeoutMs, maxSpansPerRequest: config.exportMaxSpans, spanMaxBytes: config.spanMaxBytes, log });
        const outcome = await store.replay((rs) => exporter.export(rs), args.ids.length > 0 ? { ids: args.ids } : { limit: args.limit });
        out({ ...outcome, left: await store.count() });
        break;
      }
      case 'drop':
        if (!args.all && args.ids.length === 0) fail(`drop needs span ids or --all\n${USAGE}`, 2);
        await store.remove(args.all ? (await store.list({ limit: Number.MAX_SAFE_INTEGER })).map((e) => e.spanId) : args.ids);
        out({ left: await store.count() });
        break;
      default:
        fail(USAGE, 2);
    }
  } catch (err) {
    fail((err as Error).message, 1);
  } finally {
    redis.disconnect();
  }
}

void main();
