/**
 * Lua scripts, kept as `.lua` files beside the code that runs them.
 *
 * A script may start with `--! include NAME.lua` lines: the named files (from the same folder)
 * are put in front of it, each once however often named, so rules shared by several scripts
 * live in one file. Each script's header says which KEYS it takes; keys it builds from
 * templates (keys.ts) share the hash tag of its first key, so it stays within one slot on a
 * cluster.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { RedisClient } from './connect';

const INCLUDE = /^--! include (\S+\.lua)\s*$/gm;

/** A script's source with its includes in front, each file once (in the order first named). */
export function scriptSource(dir: string, file: string, seen = new Set<string>()): string {
  seen.add(file);
  const own = readFileSync(path.join(dir, file), 'utf8');
  const included: string[] = [];
  for (const [, name] of own.matchAll(INCLUDE)) if (!seen.has(name!)) included.push(scriptSource(dir, name!, seen));
  return [...included, own.replace(INCLUDE, '')].join('\n');
}

/**
 * Defines `name` on the client (EVALSHA, with EVAL once per server that lacks it), for a script
 * whose first `numberOfKeys` arguments are keys.
 */
export function defineScript(client: RedisClient, name: string, dir: string, file: string, numberOfKeys: number): void {
  client.defineCommand(name, { numberOfKeys, lua: scriptSource(dir, file) });
}
