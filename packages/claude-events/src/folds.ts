/**
 * Folds (mapping.ts says which events fold, and onto what): merged into their span where it is at
 * hand (in the batch, or held in Redis with it), into the root's summary, or, where their span was
 * sent already (LLMFlow keeps its first copy), drawn as the instant span they carry.
 */
import { stringOf, numberOf, type Attributes } from './events';
import { COMMON_FIELDS, ROOT, type SpanDraft } from './mapping';
import type { HeldSpan } from './spans';

type Foldable = Pick<SpanDraft, 'spanId' | 'fold'>;

/**
 * Merges each fold whose target is in `items` into it (via `merge`), in the order `orderOf`
 * gives (event.sequence: a later fold's value wins, a reply body's messages over the answer's
 * text); returns what is left: the spans (targets included), and the folds not resolved here.
 */
export function foldWithin<T extends Foldable>(
  items: T[],
  merge: (target: T, attributes: Attributes) => void,
  orderOf: (item: T) => number,
): { spans: T[]; unresolved: T[] } {
  const byId = new Map(items.filter((i) => !i.fold).map((i) => [i.spanId, i]));
  const waiting = items.filter((i) => i.fold).sort((a, b) => orderOf(a) - orderOf(b));
  // Aliases first: the folds that name a target by its alias resolve once it is known.
  for (const f of waiting) {
    const target = byId.get(f.fold!.into);
    if (target && f.fold!.alias) byId.set(f.fold!.alias, target);
  }
  const unresolved: T[] = [];
  for (const f of waiting) {
    const target = byId.get(f.fold!.into);
    if (target) merge(target, f.fold!.attributes);
    else unresolved.push(f);
  }
  return { spans: items.filter((i) => !i.fold), unresolved };
}

/** The event.sequence of a draft or a held span: the order folds are merged in. */
export const eventOrder = (s: { attributes: Attributes }): number => numberOf(s.attributes['event.sequence']) ?? 0;

/** A held span as drawn: a fold not merged is its own instant span. */
export const unfolded = ({ fold: _, ...span }: HeldSpan): HeldSpan => span;

/** Merges into a held span (or a draft). */
export const mergeHeld = (h: { attributes: Attributes }, attributes: Attributes) =>
  void (h.attributes = Object.assign({}, h.attributes, attributes));

/**
 * The held spans of a turn as its root draws them: folds merged into the spans they name, those
 * onto the root handed back (in event order) for its summary, the rest drawn as their own spans.
 * With `rootDrawn` the root can take nothing more: folds onto it are drawn as their own spans too.
 */
export function resolveHeld(held: HeldSpan[], { rootDrawn = false } = {}): { spans: HeldSpan[]; root: Attributes[] } {
  const { spans, unresolved } = foldWithin(held, mergeHeld, eventOrder);
  const root: { order: number; attributes: Attributes }[] = [];
  for (const h of unresolved) {
    if (h.fold!.into !== ROOT || rootDrawn) spans.push(unfolded(h));
    else {
      const a = h.attributes;
      root.push({ order: numberOf(a['event.sequence']) ?? Number(BigInt(h.end) / 1_000_000n), attributes: a });
    }
  }
  return { spans, root: root.sort((x, y) => x.order - y.order).map((r) => r.attributes) };
}

/** Fields of an event the root already has (its session, its user) or that say only what it is. */
const ROOT_SHARED = new Set<string>([...COMMON_FIELDS, 'span.type', 'traceloop.span.kind']);

/**
 * The root's attributes for the events folded onto it: every event in order as one line of
 * `claude_code.interaction.events` (its name and its own fields, nothing dropped), and a
 * compact start-up summary: the plugins loaded, where the settings came from, hooks registered.
 */
export function rootSummaryOf(events: Attributes[]): Attributes {
  if (events.length === 0) return {};
  const lines = events.map((a) => {
    const own = Object.fromEntries(Object.entries(a).filter(([k]) => !ROOT_SHARED.has(k)));
    return `${stringOf(a['event.name']) ?? 'event'} ${JSON.stringify(own)}`;
  });
  const named = (n: string) => events.filter((a) => a['event.name'] === n);
  const out: Attributes = { 'claude_code.interaction.events': lines };
  const plugins = named('plugin_loaded').flatMap((a) => stringOf(a['plugin.name']) ?? []);
  if (plugins.length > 0) out['claude_code.startup.plugins'] = plugins;
  const hooks = named('hook_registered').length;
  if (hooks > 0) out['claude_code.startup.hooks_registered'] = hooks;
  const settings = named('managed_settings_resolved').at(-1);
  if (settings) {
    const sources = settings['managed_settings.sources'];
    out['claude_code.startup.settings_sources'] =
      Array.isArray(sources) && sources.length > 0 ? sources.map(String) : ['none'];
  }
  const modes = named('permission_mode_changed').map(
    (a) => `${stringOf(a['from_mode']) ?? '?'} -> ${stringOf(a['to_mode']) ?? '?'}`,
  );
  if (modes.length > 0) out['claude_code.interaction.permission_modes'] = modes;
  const skills = named('skill_activated').map((a) => stringOf(a['skill.name']) ?? '?');
  if (skills.length > 0) out['claude_code.interaction.skills'] = skills;
  return out;
}
