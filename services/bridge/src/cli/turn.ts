/**
 * A synthetic Claude Code turn (`ccbridge send-fixture`, `ccbridge doctor`): a prompt, one model
 * request and its answer, shaped as Claude Code 2.1 logs them (resource, scope, event names,
 * `event.sequence`, `prompt.id`), with fresh ids and the current time, sent the way Claude Code
 * would send it (OTLP/HTTP protobuf or JSON, or OTLP/gRPC). Its root's span id is known in
 * advance, so the caller can wait for it in LLMFlow.
 */
import { randomUUID } from 'node:crypto';
import zlib from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { promptKeyOf, rootSpanIdFor, traceIdFor } from '@ccbridge/claude-events';
import {
  encodeExportRequest,
  grpcExportMethod,
  type ExportLogsRequest,
  type KeyValue,
  type LogRecord,
} from '@ccbridge/otlp';
import type { LogsTarget } from './checks';

export interface SyntheticTurn {
  request: ExportLogsRequest;
  sessionId: string;
  traceId: string;
  rootSpanId: string;
}

const str = (key: string, value: string): KeyValue => ({ key, value: { stringValue: value } });

export function syntheticTurn(nowMs = Date.now(), text = 'ccbridge: is this reaching LLMFlow?'): SyntheticTurn {
  const sessionId = randomUUID();
  const promptId = randomUUID();
  const requestId = `req_ccbridge_${nowMs}`;
  const common = [str('session.id', sessionId), str('user.id', 'ccbridge-doctor'), str('terminal.type', 'ccbridge')];
  const at = (offsetMs: number) => BigInt(nowMs + offsetMs) * 1_000_000n;
  const record = (name: string, seq: number, offsetMs: number, attributes: KeyValue[]): LogRecord => ({
    timeUnixNano: String(at(offsetMs)),
    observedTimeUnixNano: String(at(offsetMs)),
    body: { stringValue: `claude_code.${name}` },
    attributes: [
      ...common,
      str('event.name', name),
      str('event.timestamp', new Date(nowMs + offsetMs).toISOString()),
      { key: 'event.sequence', value: { intValue: String(seq) } },
      str('prompt.id', promptId),
      ...attributes,
    ],
  });
  const logRecords = [
    record('user_prompt', 0, 0, [
      str('prompt', text),
      { key: 'prompt_length', value: { intValue: String(text.length) } },
    ]),
    record('api_request', 1, 40, [
      str('model', 'ccbridge-synthetic'),
      { key: 'input_tokens', value: { intValue: '12' } },
      { key: 'output_tokens', value: { intValue: '3' } },
      { key: 'duration_ms', value: { intValue: '35' } },
      str('request_id', requestId),
    ]),
    record('assistant_response', 2, 41, [
      str('response', 'yes'),
      str('request_id', requestId),
      str('model', 'ccbridge-synthetic'),
    ]),
  ];
  const request: ExportLogsRequest = {
    resourceLogs: [
      {
        resource: { attributes: [str('service.name', 'claude-code'), str('service.version', 'ccbridge-synthetic')] },
        scopeLogs: [{ scope: { name: 'com.anthropic.claude_code.events', version: 'ccbridge-synthetic' }, logRecords }],
      },
    ],
  };
  const key = promptKeyOf(promptId);
  return { request, sessionId, traceId: traceIdFor(key), rootSpanId: rootSpanIdFor(key) };
}

/** Sends the turn as Claude Code would to `target`; resolves with what the receiver answered, throws when nothing answers. */
export async function sendTurn(
  target: LogsTarget,
  request: ExportLogsRequest,
  headers: Record<string, string> = {},
): Promise<string> {
  if (target.protocol === 'grpc') {
    const url = new URL(target.url);
    const Client = grpc.makeGenericClientConstructor({ Export: grpcExportMethod('logs') }, 'Export');
    const client = new Client(
      url.host,
      url.protocol === 'https:' ? grpc.credentials.createSsl() : grpc.credentials.createInsecure(),
    );
    const metadata = new grpc.Metadata();
    for (const [k, v] of Object.entries(headers)) metadata.set(k.toLowerCase(), v);
    try {
      await new Promise<void>((resolve, reject) => {
        (
          client as unknown as {
            Export: (
              b: Buffer,
              m: grpc.Metadata,
              o: grpc.CallOptions,
              cb: (e: grpc.ServiceError | null) => void,
            ) => void;
          }
        ).Export(
          Buffer.from(encodeExportRequest('logs', request, 'protobuf')),
          metadata,
          { deadline: Date.now() + 10_000 },
          (err) => (err ? reject(new Error(`gRPC ${grpc.status[err.code]}: ${err.details}`)) : resolve()),
        );
      });
    } finally {
      client.close();
    }
    return 'OK';
  }
  const json = target.protocol === 'http/json';
  const body = json
    ? Buffer.from(encodeExportRequest('logs', request, 'json'))
    : zlib.gzipSync(encodeExportRequest('logs', request, 'protobuf'));
  const response = await fetch(target.url, {
    method: 'POST',
    headers: {
      'content-type': json ? 'application/json' : 'application/x-protobuf',
      ...(json ? {} : { 'content-encoding': 'gzip' }),
      ...headers,
    },
    body,
    signal: AbortSignal.timeout(10_000),
  });
  const text = await response.text().catch(() => '');
  if (!response.ok)
    throw new Error(`${target.url} answered ${response.status}${text ? `: ${text.slice(0, 200)}` : ''}`);
  return `${response.status}`;
}

/** Resolves once LLMFlow lists the span (GET /api/traces/ID), or false after `timeoutMs`. */
export async function waitInLlmflow(llmflowUrl: string, spanId: string, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const found = await fetch(`${llmflowUrl.replace(/\/+$/, '')}/api/traces/${spanId}`, {
      signal: AbortSignal.timeout(5_000),
    }).then(
      (r) => r.ok,
      () => false,
    );
    if (found) return true;
    await new Promise((r) => setTimeout(r, 250));
  }
  return false;
}
