#!/usr/bin/env node
/**
 * ccbridge: the operator's command line (`npx ccbridge …` from a checkout, `ccbridge …` once
 * installed, `docker compose exec bridge-worker ccbridge …` in the compose deployment).
 *
 *   ccbridge status                         Redis and LLMFlow reachable, queue, dead letters, open turns
 *   ccbridge doctor [--no-send]             this shell's Claude Code settings, then a synthetic turn
 *                                           sent where Claude Code sends, waited for in LLMFlow
 *   ccbridge send-fixture [--endpoint URL] [--protocol grpc|http/protobuf|http/json] [--token T]
 *                                           a synthetic turn through the whole path, without Claude Code
 *   ccbridge dead-letters list|show|replay|drop …
 *   ccbridge sessions [--limit N]           each session's events against Claude Code's counters, and the verdict
 *
 * Every command reads the bridge's own settings (REDIS_URL, LLMFLOW_URL, …) from the
 * environment; `--llmflow URL` overrides LLMFlow's. `--json` prints one JSON document for
 * scripts. Exit status: 0 all well, 1 something wrong or unreachable, 2 bad usage or setting.
 */
import { deadLetters, DEAD_LETTERS_USAGE } from './cli/dead-letters';
import { doctor, sendFixture } from './cli/doctor';
import { EXIT, UsageError, parseArgs, type Args } from './cli/io';
import { sessions } from './cli/sessions';
import { status } from './cli/status';

const COMMANDS: Record<string, (args: Args) => Promise<number>> = {
  status,
  doctor,
  'send-fixture': sendFixture,
  'dead-letters': deadLetters,
  sessions,
};

const USAGE = `usage: ccbridge <command> [--json]
  status                      is the pipeline moving: Redis, LLMFlow, queue, dead letters, open turns
  doctor [--no-send] [--llmflow URL] [--timeout S]
                              check this shell's Claude Code settings, then send a synthetic turn
                              where Claude Code would and wait for it in LLMFlow
  send-fixture [--endpoint URL] [--protocol grpc|http/protobuf|http/json] [--token T] [--llmflow URL] [--no-wait]
                              send a synthetic turn through the whole path, without Claude Code
  ${DEAD_LETTERS_USAGE.replace('ccbridge ', '')}
  sessions [--limit N]        each Claude Code session: turns, tokens and cost from its events and from
                              its counters, what was unaccounted, the verdict (exit 1 when one is not ok)`;

async function main(): Promise<number> {
  const [name = '', ...rest] = process.argv.slice(2);
  const command = COMMANDS[name];
  if (!command || name === '--help') {
    process.stderr.write(`${USAGE}\n`);
    return name === '--help' ? EXIT.ok : EXIT.usage;
  }
  try {
    return await command(parseArgs(rest));
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`ccbridge ${name}: ${err.message}\n`);
      return EXIT.usage;
    }
    process.stderr.write(`ccbridge ${name}: ${(err as Error).message}\n`);
    return EXIT.problem;
  }
}

// main answers every failure with an exit code: it does not reject.
void main().then((code) => process.exit(code));
