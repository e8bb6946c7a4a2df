/**
 * Anthropic Messages API bodies (as Claude Code logs them with OTEL_LOG_RAW_API_BODIES) in the
 * GenAI semantic conventions' message form: `gen_ai.input.messages`, `gen_ai.system_instructions`
 * and `gen_ai.output.messages`, each a JSON string (what LLMFlow stores and shows). A message is
 * `{ role, parts }`; a part `{ type: 'text', content }`, `{ type: 'tool_call', id, name, arguments }`,
 * `{ type: 'tool_call_response', id, response }`, or the block as it came for other types.
 */
import type { Attributes } from './events';

type Block = Record<string, unknown> & { type?: unknown };

function partOf(block: unknown): Record<string, unknown> {
  if (typeof block === 'string') return { type: 'text', content: block };
  const b = (block && typeof block === 'object' ? block : {}) as Block;
  switch (b.type) {
    case 'text':
      return { type: 'text', content: b['text'] };
    case 'tool_use':
      return { type: 'tool_call', id: b['id'], name: b['name'], arguments: b['input'] };
    case 'tool_result':
      return {
        type: 'tool_call_response',
        id: b['tool_use_id'],
        response: b['content'],
        ...(b['is_error'] === true && { is_error: true }),
      };
    case 'thinking':
      return { type: 'reasoning', content: b['thinking'] };
    default:
      // A block's type is text; one that is not is shown as JSON rather than as [object Object].
      return { ...b, type: typeof b.type === 'string' ? b.type : b.type == null ? 'unknown' : JSON.stringify(b.type) };
  }
}

const partsOf = (content: unknown): Record<string, unknown>[] =>
  Array.isArray(content) ? content.map(partOf) : [partOf(content)];

/** One message of text (`role`: user, assistant), as the GenAI conventions' messages. */
export const textMessages = (role: string, text: string) => JSON.stringify([{ role, parts: partsOf(text) }]);

/** A request body's conversation and system prompt. */
export function requestMessages(body: Record<string, unknown>): Attributes {
  const messages = Array.isArray(body['messages']) ? (body['messages'] as Record<string, unknown>[]) : [];
  return {
    'gen_ai.input.messages': JSON.stringify(messages.map((m) => ({ role: m['role'], parts: partsOf(m['content']) }))),
    ...(body['system'] !== undefined && { 'gen_ai.system_instructions': JSON.stringify(partsOf(body['system'])) }),
  };
}

/** A response body (one assistant message) as the output messages. */
export function responseMessages(body: Record<string, unknown>): Attributes {
  const finish = typeof body['stop_reason'] === 'string' && { finish_reason: body['stop_reason'] };
  const message = { role: body['role'] ?? 'assistant', parts: partsOf(body['content']), ...finish };
  return { 'gen_ai.output.messages': JSON.stringify([message]) };
}
