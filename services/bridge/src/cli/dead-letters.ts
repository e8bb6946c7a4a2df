/**
 * `ccbridge dead-letters`: the operator's view of the dead-letter store (spans LLMFlow refused
 * for their content).
 *
 *   list [--limit N]                  id, name, reason, when (JSON lines)
 *   show SPAN_ID...                   the whole entry, the span included
 *   replay [--limit N | SPAN_ID...]   send again; those LLMFlow takes leave the store
 *   drop SPAN_ID... | --all
 *
 * Output is one JSON line per entry (the entries are data), then a summary line.
 */
import { DeadLetterStore } from '@ccbridge/dead-letter';
import { LlmflowExporter } from '@ccbridge/llmflow';
import { createLogger } from '@ccbridge/log';
import { EXIT, UsageError, flag, settings, toolRedis, within, type Args } from './io';

export const DEAD_LETTERS_USAGE =
  'ccbridge dead-letters list [--limit N] | show ID... | replay [--limit N | ID...] | drop ID... | --all';
const GIVE_UP_MS = 30_000;

function limitOf(args: Args): number {
  const raw = flag(args, 'limit');
  if (raw === undefined) return 100;
  const limit = Number(raw);
  if (!Number.isSafeInteger(limit) || limit < 1) throw new UsageError('--limit takes a whole number above 0');
  return limit;
}

export async function deadLetters(args: Args): Promise<number> {
  const [command = '', ...rest] = args.positional;
  const ids = rest.map((id) => {
    if (!/^[0-9a-f]{16}$/i.test(id)) throw new UsageError(`${JSON.stringify(id)} is not a span id (16 hex digits)`);
    return id.toLowerCase();
  });
  const limit = limitOf(args);
  const config = settings();
  const log = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel);
  const { redis, url } = toolRedis(config);
  const store = new DeadLetterStore(redis, { maxEntries: config.deadLetterMax, log });
  const out = (value: unknown) => process.stdout.write(`${JSON.stringify(value)}\n`);
  const run = async () => {
    switch (command) {
      case 'list':
        for (const e of await store.list({ limit })) {
          out({
            spanId: e.spanId,
            traceId: e.traceId,
            name: e.name,
            source: e.source,
            at: new Date(e.at).toISOString(),
            reason: e.reason,
          });
        }
        out({ total: await store.count() });
        return EXIT.ok;
      case 'show':
        for (const e of await store.list({ ids })) out(e);
        return EXIT.ok;
      case 'replay': {
        const exporter = new LlmflowExporter({
          url: config.llmflowUrl,
          timeoutMs: config.exportTimeoutMs,
          maxSpansPerRequest: config.exportMaxSpans,
          spanMaxBytes: config.spanMaxBytes,
          log,
        });
        const outcome = await store.replay((rs) => exporter.export(rs), ids.length > 0 ? { ids } : { limit });
        out({ ...outcome, left: await store.count() });
        return EXIT.ok;
      }
      case 'drop':
        if (!args.flags.has('all') && ids.length === 0) throw new UsageError('drop needs span ids or --all');
        await store.remove(
          args.flags.has('all') ? (await store.list({ limit: Number.MAX_SAFE_INTEGER })).map((e) => e.spanId) : ids,
        );
        out({ left: await store.count() });
        return EXIT.ok;
      default:
        throw new UsageError(`usage: ${DEAD_LETTERS_USAGE}`);
    }
  };
  try {
    return await within(run(), GIVE_UP_MS, `Redis at ${url} did not answer within ${GIVE_UP_MS / 1000} s`);
  } finally {
    redis.disconnect();
  }
}
