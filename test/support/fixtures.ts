/** The captured Claude Code payloads in test/fixtures, by scenario and encoding. */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import {
  decodeExportRequest,
  type ExportLogsRequest,
  type ExportTraceRequest,
  type Signal,
  type WireFormat,
} from '@ccbridge/otlp';

export const FIXTURES = path.join(__dirname, '..', 'fixtures', 'claude-code-2.1.328');
export const SCENARIOS = ['simple', 'tool', 'two-tools'] as const;
export type Scenario = (typeof SCENARIOS)[number];
export type Capture = 'json' | 'protobuf' | 'native';

export interface Payload {
  signal: Signal;
  format: WireFormat;
  file: string;
  body: Buffer;
}

/** The requests of one capture, in the order Claude Code sent them. */
export function payloads(capture: Capture, scenario: Scenario): Payload[] {
  const dir = path.join(FIXTURES, capture, scenario);
  return readdirSync(dir)
    .filter((f) => /^\d+_v1_(logs|metrics|traces)\.(json|pb)$/.test(f))
    .sort()
    .map((file) => ({
      signal: /_v1_(\w+)\./.exec(file)![1] as Signal,
      format: file.endsWith('.pb') ? 'protobuf' : 'json',
      file: path.join(dir, file),
      body: readFileSync(path.join(dir, file)),
    }));
}

export function logsOf(capture: Capture, scenario: Scenario): ExportLogsRequest {
  const p = payloads(capture, scenario).find((x) => x.signal === 'logs')!;
  return decodeExportRequest('logs', p.body, p.format);
}

export function nativeTraceOf(scenario: Scenario): ExportTraceRequest {
  const p = payloads('native', scenario).find((x) => x.signal === 'traces')!;
  return decodeExportRequest('traces', p.body, p.format);
}

/** Event names in a logs request, with their counts. */
export function eventCounts(request: ExportLogsRequest): Map<string, number> {
  const counts = new Map<string, number>();
  for (const rl of request.resourceLogs ?? []) {
    for (const sl of rl.scopeLogs ?? []) {
      for (const r of sl.logRecords ?? []) {
        const name = r.body?.stringValue ?? '';
        counts.set(name, (counts.get(name) ?? 0) + 1);
      }
    }
  }
  return counts;
}

/** How many spans of each kind the bridge draws for a capture, counted from its events. */
export function expectedSpans(capture: Capture, scenario: Scenario) {
  const counts = eventCounts(logsOf(capture, scenario));
  const n = (name: string) => counts.get(`claude_code.${name}`) ?? 0;
  const llm = n('api_request') + n('api_error');
  const tools = n('tool_result');
  const events = [...counts.values()].reduce((a, b) => a + b, 0);
  // The rows Claude Code's own trace draws: a root for the prompt, an LLM span per request, a
  // permission span per decision, a tool and its execution per tool_result, a span per hook; the
  // other events of the captures (start-up, answers) fold onto those (mapping.ts).
  const total = 1 + llm + n('tool_decision') + 2 * tools + n('hook_execution_complete');
  // With BRIDGE_EVENT_ROWS=each: a span for every other event too (a hook's start and complete are one).
  const each = 1 + events - n('user_prompt') - n('hook_execution_start') + tools;
  return { llm, tools, decisions: n('tool_decision'), total, each };
}
