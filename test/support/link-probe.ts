/**
 * lua/subagents.lua's A.link (which Agent call started which subagent) on a state the test
 * gives, run in a real Redis: the rules live in Lua only, so they are tested there.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { DEFAULT_LIFECYCLE, type AgentCall, type AgentSeen, type Rule } from '@ccbridge/claude-events';
import { scriptSource, shardKeys } from '@ccbridge/redis';

const LUA = path.join(__dirname, '..', '..', 'packages', 'claude-events', 'lua');
const SOURCE = `${scriptSource(LUA, 'subagents.lua')}\n${readFileSync(path.join(__dirname, 'link-probe.lua'), 'utf8')}`;

/** A link A.link records: which call started a subagent, by which rule (lua/subagents.lua `links`). */
export interface AgentLink {
  /** The call's tool_use_id; '' for `root`. */
  call: string;
  rule: Rule;
  /** For `root`: the prompt key whose root it goes under. */
  key?: string;
}

export interface LinkState {
  session: string;
  calls: AgentCall[];
  agents: AgentSeen[];
  links: [string, AgentLink][];
  contiguous: string[];
  promptedAfter: string[];
}

/** The links A.link records for `state` (in a scratch namespace: each call its own session). */
export async function linksOf(
  redis: Redis,
  state: LinkState,
  namespace = 'link-probe',
): Promise<[string, AgentLink][]> {
  const keys = shardKeys(0, namespace);
  const input = { now: Date.now(), cfg: DEFAULT_LIFECYCLE, templates: keys.templates, state };
  const raw = (await redis.eval(
    SOURCE,
    3,
    keys.deadlines,
    keys.stats,
    keys.callDeadlines,
    JSON.stringify(input),
  )) as string;
  const out = JSON.parse(raw) as unknown;
  return Array.isArray(out) ? (out as [string, AgentLink][]) : [];
}
