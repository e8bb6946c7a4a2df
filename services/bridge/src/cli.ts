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
 * scripts; `--help` a command's own help. A flag a command does not take is refused with that
 * command's help on stderr and exit status 2. Exit status: 0 all well, 1 something wrong or
 * unreachable, 2 bad usage or setting.
 */
import { deadLetters, DEAD_LETTERS_USAGE } from './cli/dead-letters';
import { doctor, sendFixture } from './cli/doctor';
import { EXIT, UsageError, parseArgs, type Args, type FlagSpec } from './cli/io';
import { sessions } from './cli/sessions';
import { status } from './cli/status';

/** Each command: what runs it, the flags it takes (anything else is refused), its own help. */
interface Command {
  run: (args: Args) => Promise<number>;
  flags: FlagSpec;
  usage: string;
}

const COMMANDS: Record<string, Command> = {
  status: {
    run: status,
    flags: { json: 'boolean' },
    usage: `usage: ccbridge status [--json]
  is the pipeline moving: Redis, LLMFlow, queue, dead letters, open turns`,
  },
  doctor: {
    run: doctor,
    flags: { json: 'boolean', 'no-send': 'boolean', llmflow: 'string', timeout: 'string' },
    usage: `usage: ccbridge doctor [--no-send] [--llmflow URL] [--timeout S] [--json]
  check this shell's Claude Code settings, then send a synthetic turn where Claude Code would
  and wait for it in LLMFlow`,
  },
  'send-fixture': {
    run: sendFixture,
    flags: {
      json: 'boolean',
      endpoint: 'string',
      protocol: 'string',
      token: 'string',
      llmflow: 'string',
      timeout: 'string',
      'no-wait': 'boolean',
    },
    usage: `usage: ccbridge send-fixture [--endpoint URL] [--protocol grpc|http/protobuf|http/json] [--token T]
    [--llmflow URL] [--timeout S] [--no-wait] [--json]
  send a synthetic turn through the whole path, without Claude Code`,
  },
  'dead-letters': {
    run: deadLetters,
    flags: { json: 'boolean', limit: 'string', all: 'boolean' },
    usage: `usage: ${DEAD_LETTERS_USAGE}
  spans LLMFlow refused for their content: list them, show, send again, drop (JSON lines)`,
  },
  sessions: {
    run: sessions,
    flags: { json: 'boolean', limit: 'string' },
    usage: `usage: ccbridge sessions [--limit N] [--json]
  each Claude Code session: turns, tokens and cost from its events and from its counters, what
  was unaccounted, the verdict (exit 1 when one is not ok)`,
  },
};

/** A command's help, indented under the list of commands. */
const listed = (c: Command) =>
  c.usage
    .replace(/^usage: ccbridge /, '')
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n');

const USAGE = `usage: ccbridge <command> [--help] [--json]
${Object.values(COMMANDS).map(listed).join('\n')}`;

async function main(): Promise<number> {
  const [name = '', ...rest] = process.argv.slice(2);
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) {
    process.stderr.write(`${USAGE}\n`);
    return name === '--help' ? EXIT.ok : EXIT.usage;
  }
  let args: Args;
  try {
    args = parseArgs(rest, { ...command.flags, help: 'boolean' });
  } catch (err) {
    // An unknown flag, a value missing: the command's own help, exit 2.
    process.stderr.write(`ccbridge ${name}: ${(err as Error).message}\n${command.usage}\n`);
    return EXIT.usage;
  }
  if (args.flags.has('help')) {
    process.stderr.write(`${command.usage}\n`);
    return EXIT.ok;
  }
  try {
    return await command.run(args);
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
