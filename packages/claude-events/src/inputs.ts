/**
 * What each LLM call got as input, told from the events alone (raw API bodies, when logged, say
 * it exactly and win: messages.ts): what the model got since the previous call of its chain, the
 * user's prompt for the main agent's first call of a turn, then the results of the tools the
 * previous call asked for (name, id, input, outcome: the events carry no tool output).
 *
 * The chains: the main agent's requests (isMainThread) and each subagent's (`agent_id`,
 * query_source `agent:...`); side requests belong to none and get no input. A tool's
 * `tool_result` (and a refused tool's `tool_decision`) names the `request_id` of the call that
 * asked for it; a result of call P is logged after the call before P and before the next call N:
 * so all N needs lies after the chain's call two before N (or the turn's prompt), and N's input is
 * certain once every number in between is known. Facts keep tool input and error cut to
 * INPUT_MAX characters, so what a turn keeps for later batches (lua/turns.lua) stays bounded.
 */
import type { KeyValue } from '@ccbridge/otlp';
import { booleanOf, entryOf, numberOf, sequenceIn, stringOf, type Attributes, type ClaudeEvent } from './events';
import { sessionOf } from './assign';
import { isMainThread, llmSpanIdFor } from './mapping';
import { textMessages } from './messages';
import type { HeldSpan } from './spans';

/** Longest tool input or error a fact keeps (characters). */
export const INPUT_MAX = 2000;

/** What one event tells about the calls' inputs. */
export interface InputFact {
  seq: number;
  kind: 'call' | 'result';
  /** '' for the main agent's chain, else the subagent's id. */
  chain: string;
  /** The call's request_id (call), or the request_id of the call that asked for the tool (result). */
  requestId: string;
  name?: string;
  id?: string;
  input?: string;
  outcome?: string;
}

/** The turn's prompt: the main chain's first call's input. */
export type TurnPrompt = { seq: number; text?: string };

/** Text as a fact keeps it: at most INPUT_MAX characters, and how long it was when cut. */
export const cut = (text: string | undefined): string | undefined =>
  text === undefined || text.length <= INPUT_MAX
    ? text
    : `${text.slice(0, INPUT_MAX)}… (cut, ${text.length} characters)`;

/**
 * The fact an event's attributes tell, or a span's drawn from it (a tool span has its input as
 * gen_ai.prompt): a chain's `api_request`, a `tool_result`, a refused tool's `tool_decision`.
 */
export function inputFactOf(a: Attributes, name = stringOf(a['event.name'])): InputFact | undefined {
  const seq = sequenceIn(a);
  const requestId = stringOf(a['request_id']);
  if (seq === undefined || !requestId) return undefined;
  const agent = stringOf(a['agent_id']);
  if (name === 'api_request') {
    // A subagent's own requests are `agent:...`; its side requests (a summary, ...) are in no chain.
    const source = stringOf(a['query_source']);
    if (agent ? source !== undefined && !source.startsWith('agent:') : !isMainThread(a)) return undefined;
    return { seq, kind: 'call', chain: agent ?? '', requestId };
  }
  const decision = stringOf(a['decision']);
  const refused = name === 'tool_decision' && decision !== undefined && decision !== 'accept';
  if (name !== 'tool_result' && !refused) return undefined;
  const success = booleanOf(a['success']);
  const size = numberOf(a['tool_result_size_bytes']);
  const outcome = refused
    ? `refused (${decision})`
    : success === false
      ? `failed: ${cut(stringOf(a['error'])) ?? 'error'}`
      : `ok${size !== undefined ? ` (${size} bytes)` : ''}`;
  const input = stringOf(a['tool_input']) ?? stringOf(a['tool_parameters']) ?? stringOf(a['gen_ai.prompt']);
  return {
    seq,
    kind: 'result',
    chain: agent ?? '',
    requestId,
    ...(stringOf(a['tool_name']) && { name: stringOf(a['tool_name']) }),
    ...(stringOf(a['tool_use_id']) && { id: stringOf(a['tool_use_id']) }),
    ...(input !== undefined && { input: cut(input) }),
    outcome,
  };
}

/** The prompt's text as a user message; the tool results as `tool` messages with tool_call_response parts. */
const promptInput = (text: string): Attributes => ({
  'gen_ai.input.messages': textMessages('user', text),
  'gen_ai.prompt': text,
});

/** JSON text parsed, or the text itself when it is not JSON. */
export const parsedOr = (text: string): unknown => {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
};

function resultsInput(results: InputFact[]): Attributes {
  const messages = results.map((r) => ({
    role: 'tool',
    parts: [
      {
        type: 'tool_call_response',
        ...(r.id && { id: r.id }),
        ...(r.name && { name: r.name }),
        response: { ...(r.input !== undefined && { input: parsedOr(r.input) }), outcome: r.outcome },
      },
    ],
  }));
  const lines = results.map((r) => `${r.name ?? 'tool'}${r.input !== undefined ? ` ${r.input}` : ''} → ${r.outcome}`);
  return { 'gen_ai.input.messages': JSON.stringify(messages), 'gen_ai.prompt': lines.join('\n') };
}

/**
 * Each call's input (by request_id) that the facts make certain: `known(lo, hi)` says whether
 * every event.sequence strictly between lo and hi is known (at a turn's end, all is known).
 * A subagent's first call is left out: its input is its Agent call's prompt (agents.ts).
 */
export function callInputs(
  facts: Iterable<InputFact>,
  prompt: TurnPrompt | undefined,
  known: (lo: number, hi: number) => boolean,
): Map<string, Attributes> {
  const bySeq = new Map<number, InputFact>();
  for (const f of facts) bySeq.set(f.seq, f);
  const all = [...bySeq.values()].sort((a, b) => a.seq - b.seq);
  const chains = new Map<string, InputFact[]>();
  for (const f of all) if (f.kind === 'call') entryOf(chains, f.chain, () => []).push(f);
  const out = new Map<string, Attributes>();
  for (const [chain, calls] of chains) {
    const start = chain === '' && prompt ? prompt.seq : undefined;
    calls.forEach((call, i) => {
      const previous = calls[i - 1];
      const lo = calls[i - 2]?.seq ?? start ?? -1;
      if (lo >= call.seq || !known(lo, call.seq)) return;
      if (!previous) {
        if (chain === '' && prompt?.text !== undefined) out.set(call.requestId, promptInput(prompt.text));
        return;
      }
      const results = all.filter((f) => f.kind === 'result' && f.requestId === previous.requestId && f.seq < call.seq);
      if (results.length > 0) out.set(call.requestId, resultsInput(results));
    });
  }
  return out;
}

export const eventInputFact = (e: ClaudeEvent): InputFact | undefined => inputFactOf(e.attributes, e.name);

/** Adds what `input` says to attributes that lack it (theirs win). Object.assign: a spread of a large record made V8 build hidden classes. */
export const withInput = (attributes: Attributes, input: Attributes | undefined): Attributes =>
  input ? Object.assign({}, input, attributes) : attributes;

/** A user_prompt's text and place: where the main chain starts. */
export function turnPromptOf(prompt: Attributes | undefined, seq: number | undefined): TurnPrompt | undefined {
  if (!prompt || seq === undefined) return undefined;
  const text = stringOf(prompt['prompt']) ?? stringOf(prompt['prompt_text']);
  return { seq, ...(text !== undefined && { text }) };
}

/**
 * The main chain's inputs a batch makes certain (`certain`: by LLM span id), the LLM spans whose
 * input it cannot tell (`uncertain`: they wait with their turn's root), and each turn's facts
 * (`facts`: [event.sequence, JSON InputFact], kept for later batches and the root). A number
 * counts as known when an event of the same session and resource (one process) in the batch
 * carries it. Subagents' calls get theirs when they are placed (agents.ts).
 */
export function batchInputs(events: ClaudeEvent[], keys: (string | undefined)[]) {
  const seen = new Map<KeyValue[], Map<string, Set<number>>>();
  const turns = new Map<string, { session: string; facts: InputFact[]; prompt?: TurnPrompt; resource: KeyValue[] }>();
  events.forEach((e, i) => {
    const session = sessionOf(e);
    const seq = sequenceIn(e.attributes);
    if (!session || seq === undefined) return;
    const bySession = entryOf(seen, e.resource, () => new Map<string, Set<number>>());
    entryOf(bySession, session, () => new Set<number>()).add(seq);
    const key = keys[i];
    if (!key) return;
    const turn = entryOf(turns, key, () => ({ session, facts: [], resource: e.resource }));
    if (e.name === 'user_prompt') turn.prompt = turnPromptOf(e.attributes, seq);
    const fact = eventInputFact(e);
    if (fact && fact.chain === '') turn.facts.push(fact);
  });
  const out = {
    certain: new Map<string, Attributes>(),
    uncertain: new Set<string>(),
    facts: new Map<string, [string, string][]>(),
  };
  for (const [key, turn] of turns) {
    const numbers = seen.get(turn.resource)?.get(turn.session) ?? new Set<number>();
    const known = (lo: number, hi: number) => {
      for (let n = lo + 1; n < hi; n++) if (!numbers.has(n)) return false;
      return true;
    };
    const inputs = callInputs(turn.facts, turn.prompt, known);
    for (const f of turn.facts) {
      if (f.kind !== 'call') continue;
      const spanId = llmSpanIdFor(turn.session, f.requestId);
      const input = inputs.get(f.requestId);
      if (input) out.certain.set(spanId, input);
      else out.uncertain.add(spanId);
    }
    const facts = turn.facts.map((f): [string, string] => [String(f.seq), JSON.stringify(f)]);
    if (facts.length > 0) out.facts.set(key, facts);
  }
  return out;
}

/**
 * Held LLM spans with their inputs added from the facts, stored and their own (at a turn's root or
 * a subagent's placement, all that will be known is); `first`: a subagent's first call's input.
 */
export function heldWithInputs(
  held: HeldSpan[],
  facts: InputFact[],
  prompt: TurnPrompt | undefined,
  first?: { chain: string; text: string; seq: number },
): void {
  const all = [...facts, ...held.flatMap((h) => inputFactOf(h.attributes) ?? [])];
  const inputs = callInputs(all, prompt, () => true);
  const call = first && all.find((f) => f.kind === 'call' && f.chain === first.chain && f.seq === first.seq);
  if (call && !inputs.has(call.requestId)) inputs.set(call.requestId, promptInput(first.text));
  for (const h of held)
    if (h.name === 'claude_code.llm_request')
      h.attributes = withInput(h.attributes, inputs.get(stringOf(h.attributes['request_id']) ?? ''));
}
