/**
 * Privacy switches, applied to events and to forwarded spans before anything is stored or
 * leaves the bridge. Each class of field is kept, replaced by a hash (so equal values still
 * group together), or dropped.
 *
 * | switch          | fields                                                                   |
 * |-----------------|--------------------------------------------------------------------------|
 * | `prompts`       | prompt and response text: prompt, prompt_text, user_prompt, response,    |
 * |                 | gen_ai.prompt, gen_ai.completion, the raw API bodies (body) and the      |
 * |                 | GenAI messages (gen_ai.input/output.messages, gen_ai.system_instructions)|
 * | `toolDetails`   | tool parameters and input: tool_parameters, tool_input, full_command,    |
 * |                 | file_path, bash_command                                                  |
 * | `userIds`       | who: user.id, user.email, user.account_uuid, user.account_id,            |
 * |                 | organization.id                                                          |
 */
import { createHash } from 'node:crypto';
import type { PrivacyMode } from '@ccbridge/config';
import { fromAnyValue, type AttributeValue, type KeyValue } from '@ccbridge/otlp';

export interface PrivacyPolicy {
  prompts: PrivacyMode;
  toolDetails: PrivacyMode;
  userIds: PrivacyMode;
}

export const KEEP_ALL: PrivacyPolicy = { prompts: 'keep', toolDetails: 'keep', userIds: 'keep' };

const FIELDS: Record<keyof PrivacyPolicy, readonly string[]> = {
  prompts: [
    'prompt',
    'prompt_text',
    'user_prompt',
    'response',
    'gen_ai.prompt',
    'gen_ai.completion',
    'body',
    'gen_ai.input.messages',
    'gen_ai.output.messages',
    'gen_ai.system_instructions',
  ],
  toolDetails: ['tool_parameters', 'tool_input', 'full_command', 'file_path', 'bash_command'],
  userIds: ['user.id', 'user.email', 'user.account_uuid', 'user.account_id', 'organization.id'],
};

export const hashValue = (v: AttributeValue): string =>
  `sha256:${createHash('sha256')
    .update(typeof v === 'string' ? v : JSON.stringify(v))
    .digest('hex')
    .slice(0, 32)}`;

export interface Redactor {
  /** Whether anything is redacted at all (so callers can skip work). */
  readonly active: boolean;
  record(attributes: Record<string, AttributeValue>): Record<string, AttributeValue>;
  keyValues(attributes: KeyValue[] | undefined): KeyValue[] | undefined;
}

export function createRedactor(policy: PrivacyPolicy): Redactor {
  const modeOf = new Map<string, PrivacyMode>();
  for (const [group, fields] of Object.entries(FIELDS) as [keyof PrivacyPolicy, readonly string[]][]) {
    if (policy[group] !== 'keep') for (const f of fields) modeOf.set(f, policy[group]);
  }
  const active = modeOf.size > 0;
  return {
    active,
    record(attributes) {
      if (!active) return attributes;
      const out: Record<string, AttributeValue> = {};
      for (const [key, value] of Object.entries(attributes)) {
        const mode = modeOf.get(key);
        if (mode === 'drop') continue;
        out[key] = mode === 'hash' && value !== null ? hashValue(value) : value;
      }
      return out;
    },
    keyValues(attributes) {
      if (!active || !attributes) return attributes;
      return attributes.flatMap((kv) => {
        const mode = modeOf.get(kv.key);
        if (mode === 'drop') return [];
        if (mode === 'hash') return [{ key: kv.key, value: { stringValue: hashValue(fromAnyValue(kv.value) ?? '') } }];
        return [kv];
      });
    },
  };
}
