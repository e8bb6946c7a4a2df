/**
 * The root's list of what went wrong in its turn (`claude_code.interaction.problems`): API
 * errors, refused and failed tools, failed hooks, exhausted retries, compactions, one short
 * line each, in the order they happened. The same tool call (same tool, same input) failing
 * again is one line that says how many times.
 */
import type { Problem } from './mapping';

/** Longest line: a failed tool's error can be its whole output. */
const MAX_LINE = 200;
const short = (text: string) => (text.length > MAX_LINE ? `${text.slice(0, MAX_LINE - 1)}…` : text);

export function problemLines(problems: Problem[]): string[] {
  const ordered = [...problems].sort((a, b) => a.order - b.order);
  const lines: { text: string; repeat?: string; times: number }[] = [];
  for (const p of ordered) {
    const same = p.repeat !== undefined ? lines.find((l) => l.repeat === p.repeat) : undefined;
    if (same) same.times += 1;
    else lines.push({ text: p.text, repeat: p.repeat, times: 1 });
  }
  return lines.map((l) =>
    short(l.times > 1 ? `${l.text} (the same call with the same input failed ${l.times} times)` : l.text),
  );
}
