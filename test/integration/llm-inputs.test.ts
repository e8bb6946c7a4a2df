/**
 * Each LLM call carries its input, from the events alone (no raw bodies): the user's prompt for
 * the turn's first call, the results of the tools the previous call asked for after that. Over
 * the captures of the real binary (and a three-call turn made of one), on a real Redis, split
 * into two batches at every boundary and delivered in both orders, as single events in reverse
 * order, and shuffled into batches of one to four events (so a batch may hold a call and miss
 * what lies between it and the call before): every LLM span's input is the same as when the turn
 * comes in one batch.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { LogRecord } from '@ccbridge/otlp';
import { KEEP_ALL, createRedactor, type PrivacyPolicy } from '@ccbridge/claude-events';
import { logsOf } from '../support/fixtures';
import { prng, recordsOf, requestOf, shuffle, treeOf, type CollectedSpan } from '../support/assembly';
import { useHarnesses } from '../support/per-file';

const { harness } = useHarnesses();

const name = (r: LogRecord) => r.body?.stringValue?.replace('claude_code.', '');
const str = (r: LogRecord, key: string) => r.attributes?.find((a) => a.key === key)?.value?.stringValue;

/** A record with some attributes replaced. */
const withAttrs = (r: LogRecord, values: Record<string, string>): LogRecord => ({
  ...r,
  attributes: r.attributes!.map((a) => (a.key in values ? { key: a.key, value: { stringValue: values[a.key] } } : a)),
});
/** Records numbered 0, 1, ... in their order, as one process numbers its events. */
const renumbered = (records: LogRecord[]) => records.map((r, i) => withAttrs(r, { 'event.sequence': String(i) }));

/** The tool capture with a second Bash call between: three calls, the last two fed by a tool each. */
function threeCalls(): LogRecord[] {
  const records = recordsOf(logsOf('json', 'tool'));
  const [decision, call, result] = [6, 7, 8].map((i) => records[i]!);
  const again = (r: LogRecord) =>
    withAttrs(r, {
      request_id: 'req_second',
      ...(str(r, 'tool_use_id') && { tool_use_id: 'toolu_second' }),
      ...(str(r, 'tool_input') && { tool_input: '{"command":"echo second"}' }),
    });
  return renumbered([...records.slice(0, 9), again(decision!), again(call!), again(result!), ...records.slice(9)]);
}

const CASES: { label: string; records: () => LogRecord[]; inputs: string[][] }[] = [
  {
    label: 'tool',
    records: () => recordsOf(logsOf('json', 'tool')),
    inputs: [['user: What is 2+2? USE_TOOL'], ['tool Bash toolu_']],
  },
  {
    label: 'two tools',
    records: () => recordsOf(logsOf('json', 'two-tools')),
    inputs: [['user: Do TWO_TOOLS'], ['tool Read toolu_1_1', 'tool Bash toolu_1_0']],
  },
  {
    label: 'three calls',
    records: threeCalls,
    inputs: [['user: What is 2+2? USE_TOOL'], ['tool Bash toolu_'], ['tool Bash toolu_second']],
  },
];

/** An LLM span's input messages, each as "role: text" or "tool name id". */
function inputOf(span: CollectedSpan): string[] {
  const raw = span.attrs['gen_ai.input.messages'];
  assert.equal(typeof raw, 'string', `${span.attrs['request_id'] as string} has input messages`);
  return (JSON.parse(raw as string) as { role: string; parts: Record<string, string>[] }[]).map((m) => {
    const part = m.parts[0]!;
    return m.role === 'tool' ? `tool ${part['name']} ${part['id']}` : `${m.role}: ${part['content']}`;
  });
}

async function treeFrom(template: ReturnType<typeof logsOf>, batches: LogRecord[][]) {
  const h = harness();
  for (const b of batches) await h.process(requestOf(template, b));
  return { tree: treeOf(h.stored().values()), spans: [...h.stored().values()], roots: h.roots().length };
}

for (const c of CASES) {
  test(`${c.label}: each LLM span carries what the model got since the previous call, however the turn is split`, async () => {
    const template = logsOf('json', 'tool');
    const records = c.records();
    const whole = await treeFrom(template, [records]);
    assert.equal(whole.roots, 1);
    const calls = whole.spans
      .filter((s) => s.name === 'claude_code.llm_request')
      .sort((a, b) => Number(a.attrs['event.sequence']) - Number(b.attrs['event.sequence']));
    assert.equal(calls.length, c.inputs.length);
    calls.forEach((call, i) => {
      const got = inputOf(call);
      assert.equal(got.length, c.inputs[i]!.length, `call ${i}: ${got.join(' | ')}`);
      got.forEach((m, j) => assert.ok(m.startsWith(c.inputs[i]![j]!), `call ${i}: ${m}`));
      assert.equal(typeof call.attrs['gen_ai.prompt'], 'string', `call ${i}: LLMFlow's input panel`);
    });
    // The tool results say what the tool was given and how it went.
    const fed = JSON.parse(calls[1]!.attrs['gen_ai.input.messages'] as string) as {
      parts: { response: { input: unknown; outcome: string } }[];
    }[];
    assert.match(fed[0]!.parts[0]!.response.outcome, /^ok/);
    assert.ok(fed[0]!.parts[0]!.response.input, 'the tool input');
    assert.match(calls[1]!.attrs['gen_ai.prompt'] as string, /→ ok/);

    const splits: LogRecord[][][] = [records.map((r) => [r]).reverse()];
    for (let k = 1; k < records.length; k++) {
      splits.push([records.slice(0, k), records.slice(k)], [records.slice(k), records.slice(0, k)]);
    }
    for (let seed = 1; seed <= 30; seed++) {
      const random = prng(seed);
      const shuffled = shuffle(records, random);
      const batches: LogRecord[][] = [];
      for (let i = 0; i < shuffled.length;) {
        const size = 1 + Math.floor(random() * 4);
        batches.push(shuffled.slice(i, (i += size)));
      }
      splits.push(batches);
    }
    for (const batches of splits) {
      const split = await treeFrom(template, batches);
      const where = batches.map((b) => b.map(name).join(',')).join(' / ');
      assert.deepEqual(split.tree, whole.tree, where);
    }
  });
}

test('inputs keep the privacy settings: a dropped prompt is no input, dropped tool details leave the name and outcome', async () => {
  const template = logsOf('json', 'tool');
  const records = recordsOf(template);
  const spansWith = async (policy: PrivacyPolicy) => {
    const h = harness({ redactor: createRedactor(policy) });
    await h.process(requestOf(template, records));
    return [...h.stored().values()]
      .filter((s) => s.name === 'claude_code.llm_request')
      .sort((a, b) => Number(a.attrs['event.sequence']) - Number(b.attrs['event.sequence']));
  };
  const [first, second] = await spansWith({ ...KEEP_ALL, prompts: 'drop' });
  assert.equal(first!.attrs['gen_ai.input.messages'], undefined, 'no prompt, no input');
  assert.equal(first!.attrs['gen_ai.prompt'], undefined);
  assert.equal(typeof second!.attrs['gen_ai.input.messages'], 'string', "the tool's result is no prompt");
  const [, noDetails] = await spansWith({ ...KEEP_ALL, toolDetails: 'drop' });
  assert.deepEqual(
    inputOf(noDetails!).map((m) => m.split(' ').slice(0, 2).join(' ')),
    ['tool Bash'],
  );
  assert.doesNotMatch(noDetails!.attrs['gen_ai.input.messages'] as string, /hello-from-tool/);
  assert.equal(noDetails!.attrs['gen_ai.prompt'], 'Bash → ok (15 bytes)');
});
