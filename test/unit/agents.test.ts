/**
 * Which Agent call started which subagent: the rules of packages/claude-events/src/agents.ts's
 * table, as lua/subagents.lua (A.link) applies them, in a real Redis.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AttributeValue } from '@ccbridge/otlp';
import {
  agentFactsOf,
  sequenceMarksOf,
  sequenceOf,
  type AgentCall,
  type AgentSeen,
  type ClaudeEvent,
} from '@ccbridge/claude-events';
import { linksOf, type AgentLink, type LinkState } from '../support/link-probe';
import { useRedis } from '../support/per-file';

const peers = useRedis();
let sessions = 0;

const state = (
  calls: AgentCall[],
  agents: AgentSeen[],
  o: { contiguous?: Set<string>; promptedAfter?: Set<string>; links?: Map<string, AgentLink> } = {},
): LinkState => ({
  session: `s${++sessions}`,
  calls,
  agents,
  links: [...(o.links ?? new Map<string, AgentLink>())],
  contiguous: [...(o.contiguous ?? new Set(agents.map((a) => a.id)))],
  promptedAfter: [...(o.promptedAfter ?? new Set<string>())],
});
const call = (id: string, d: number, r: number | undefined, extra: Partial<AgentCall> = {}): AgentCall => ({
  id,
  caller: '',
  key: 'p1',
  d,
  ...(r !== undefined && { r }),
  detail: true,
  ...extra,
});
const agent = (id: string, first: number, last: number, extra: Partial<AgentSeen> = {}): AgentSeen => ({
  id,
  parent: '',
  key: 'p1',
  first,
  last,
  ...extra,
});
const links = async (s: LinkState) =>
  Object.fromEntries((await linksOf(peers.client, s)).map(([a, l]) => [a, `${l.call}/${l.rule}`]));

// Event orders as Claude Code 2.1.328 logged them (tmp runs recorded in docs/CLAUDE_CODE_EVENTS.md).
const CASES: [string, LinkState, Record<string, string>][] = [
  [
    'one foreground agent, still running: the only open call',
    state([call('T1', 5, undefined)], [agent('A', 8, 12)]),
    { A: 'T1/only_open' },
  ],
  [
    "one foreground agent, finished: its completion is followed by its call's result",
    state([call('T1', 5, 14)], [agent('A', 8, 13, { completed: 13 })]),
    { A: 'T1/completion' },
  ],
  [
    'two in parallel, finished out of order',
    state(
      [call('TA', 5, 22), call('TB', 6, 18)],
      [agent('A', 9, 21, { completed: 21 }), agent('B', 11, 17, { completed: 17 })],
    ),
    { A: 'TA/completion', B: 'TB/completion' },
  ],
  [
    'two in parallel, still running: nothing told yet',
    state([call('TA', 5, undefined), call('TB', 6, undefined)], [agent('A', 9, 12), agent('B', 11, 13)]),
    {},
  ],
  [
    "an earlier call's result is missing: not the only open call",
    state([call('T1', 5, 9)], [agent('A', 12, 14)], { contiguous: new Set() }),
    {},
  ],
  [
    'a call that closed before the agent began is not its call',
    state([call('T1', 5, 9), call('T2', 10, undefined)], [agent('A', 12, 14)]),
    { A: 'T2/only_open' },
  ],
  [
    'one background agent: its call returned at once, yet it is the only open one',
    state([call('T1', 5, 6, { bg: true })], [agent('A', 12, 20)]),
    { A: 'T1/only_open' },
  ],
  [
    'two background agents: the notification names each',
    state(
      [call('TA', 5, 6, { bg: true }), call('TB', 7, 8, { bg: true })],
      [agent('A', 13, 15, { completed: 15 }), agent('B', 16, 25, { completed: 25 })],
      { links: new Map([['A', { call: 'TA', rule: 'notification' }]]) },
    ),
    { B: 'TB/only_open' },
  ],
  [
    'two background agents, prompts not logged: under the root once a later prompt came',
    state(
      [call('TA', 5, 6, { bg: true }), call('TB', 7, 8, { bg: true })],
      [agent('A', 13, 15, { completed: 15 }), agent('B', 16, 25, { completed: 25 })],
      { promptedAfter: new Set(['A']) },
    ),
    { A: '/root' },
  ],
  [
    'a foreground agent that failed (no subagent_completed) beside one that finished: the call left',
    state([call('TA', 5, 20), call('TB', 6, 19)], [agent('A', 9, 14), agent('B', 10, 18, { completed: 18 })]),
    { A: 'TA/only_open', B: 'TB/completion' },
  ],
  [
    'two foreground agents that failed: under the root once the session went on',
    state([call('TA', 5, 20), call('TB', 6, 19)], [agent('A', 9, 14), agent('B', 10, 18)], {
      promptedAfter: new Set(['A', 'B']),
    }),
    { A: '/root', B: '/root' },
  ],
  [
    'a background agent still running when the next prompt comes is not given up on',
    state([call('TA', 5, 6, { bg: true }), call('TB', 7, 8, { bg: true })], [agent('A', 13, 15), agent('B', 16, 17)], {
      promptedAfter: new Set(['A', 'B']),
    }),
    {},
  ],
  [
    "tool details off: the call's input unreadable, so it may be a background one",
    state([call('T1', 5, 6, { detail: undefined })], [agent('A', 12, 20)]),
    { A: 'T1/only_open' },
  ],
  [
    'a nested agent is linked to a call its parent agent made',
    state(
      [call('T1', 5, undefined), call('T2', 9, undefined, { caller: 'A' })],
      [agent('A', 8, 12), agent('B', 10, 11, { parent: 'A' })],
    ),
    { A: 'T1/only_open', B: 'T2/only_open' },
  ],
  [
    'a call already linked is not taken twice',
    state([call('T1', 5, 30)], [agent('A', 8, 12), agent('B', 14, 16)], {
      links: new Map([['A', { call: 'T1', rule: 'only_open' }]]),
    }),
    {},
  ],
];

for (const [label, s, want] of CASES) {
  test(`subagent links: ${label}`, async () => {
    assert.deepEqual(await links(s), want);
  });
}

test('subagent links: a call starts one subagent: of two workers linking it at once (each from what it read), the first stands', async () => {
  const first = state([call('T1', 5, undefined)], [agent('A', 8, 12)]);
  const second: LinkState = { ...state([call('T1', 5, undefined)], [agent('B', 9, 12)]), session: first.session };
  assert.deepEqual(await links(first), { A: 'T1/only_open' });
  assert.deepEqual(await links(second), {}, 'T1 is taken: B stays unlinked');
});

test('one event.sequence rule: a negative, fractional or non-numeric number is no sequence number, for subagents as for turns', () => {
  const event = (sequence: AttributeValue): ClaudeEvent => ({
    name: 'api_request',
    timeNs: 1_700_000_000_000_000_000n,
    attributes: { 'session.id': 's', 'prompt.id': 'p', agent_id: 'A', 'event.sequence': sequence },
    resource: [],
    traced: false,
  });
  assert.deepEqual(
    [0, 7, '12', -1, -3, 1.5, 'x', ''].map((n) => sequenceOf(event(n))),
    [0, 7, 12, undefined, undefined, undefined, undefined, undefined],
  );
  // A subagent is seen only with a usable number (its first and last events order it).
  const facts = agentFactsOf([event(4), event(-2)], ['prompt/p', 'prompt/p']);
  assert.deepEqual(
    facts.get('s')?.agents.map((a) => a.first),
    [4],
  );
  // And a turn counts only usable numbers as marks.
  assert.deepEqual(sequenceMarksOf([event(4), event(-2)]), [{ session: 's', marks: [['4', '1700000000000']] }]);
});
