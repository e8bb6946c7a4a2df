/**
 * Lua scripts, kept as `.lua` files beside the code that runs them.
 *
 * A script may start with `--! include NAME.lua` lines: the named files (from the same folder)
 * are put in front of it, each once however often named, so rules shared by several scripts
 * live in one file. Each script's header says which KEYS it takes; keys it builds from
 * templates (keys.ts) share the hash tag of its first key, so it stays within one slot on a
 * cluster; one more key, the slot's fence (fenceOf), is declared after its own.
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
 * The fence of a key's slot: a key of the same hash tag (so of the same slot) that is never
 * written. Every script declares it, after its own keys (defineScript), so that a Redis Cluster
 * runs none of the bridge's scripts while their slot moves between masters.
 *
 * The scripts build per-session keys from templates instead of declaring them (keys.ts). While
 * a slot migrates, its keys move one at a time, and a script whose declared keys have all moved
 * is redirected (ASK) to the new master, which runs it (ASKING) on the keys it holds: the
 * undeclared ones not moved yet read as absent there, and what the script writes to them makes a
 * second copy of each, which the old master then cannot move (MIGRATE answers BUSYKEY; a reshard
 * stops half done) and whose state the rest of the move overwrites or strands. A declared key
 * that is absent on both masters makes Redis answer ASK on the old one and TRYAGAIN on the new one
 * until the slot has moved: the script runs before or after the move, whole, never during it;
 * ioredis tries again meanwhile (connect.ts), then fails retryably (@ccbridge/errors).
 */
export function fenceOf(key: string): string {
  // The hash tag as Redis reads it: from the first `{` to the next `}`, when something is between.
  const open = key.indexOf('{');
  const close = open >= 0 ? key.indexOf('}', open + 1) : -1;
  return close > open + 1 ? `${key.slice(open, close + 1)}:fence` : `{${key}}:fence`;
}

type ScriptFunction = (...args: unknown[]) => Promise<unknown>;

/**
 * Defines `name` on the client (EVALSHA, with EVAL once per server that lacks it), for a script
 * whose first `numberOfKeys` arguments are keys; it is called with those, and the slot's fence
 * (fenceOf its first key) is declared after them, as KEYS[numberOfKeys + 1], which the script
 * leaves alone. (Called in a pipeline, a script would lack its fence: none is.)
 */
export function defineScript(client: RedisClient, name: string, dir: string, file: string, numberOfKeys: number): void {
  client.defineCommand(name, { numberOfKeys: numberOfKeys + 1, lua: scriptSource(dir, file) });
  const methods = client as unknown as Record<string, ScriptFunction>;
  for (const method of [name, `${name}Buffer`]) {
    const run = methods[method]!.bind(client);
    methods[method] = (...args) =>
      run(...args.slice(0, numberOfKeys), fenceOf(String(args[0])), ...args.slice(numberOfKeys));
  }
}
