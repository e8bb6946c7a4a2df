/**
 * A gate in front of a real LLMFlow that refuses what older or stricter LLMFlow builds refuse,
 * and forwards the rest untouched:
 * - bodies over `maxBodyBytes` get what express's JSON body parser answers (413,
 *   "PayloadTooLargeError: request entity too large"), as LLMFlow releases on express do
 *   with their default 100 KB limit;
 * - requests `refuse` picks get 400, as LLMFlow does for a span it cannot read;
 * - paths `notFound` picks get 404, as an LLMFlow without that route answers (no /v1/metrics
 *   before 0.4.1).
 * It counts what it refused, so a test can tell that the refusal really happened.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tracked } from './procs';
import { forwardRequest } from './forward';

export interface LlmflowGate {
  url: string;
  tooLarge: number;
  refused: number;
  notFound: number;
  forwarded: number;
  stop(): Promise<void>;
}

export interface GateOptions {
  maxBodyBytes?: number;
  /** Requests to answer 400, given the request body. */
  refuse?: (body: string) => boolean;
  /** Paths to answer 404, given the request's path. */
  notFound?: (path: string) => boolean;
}

export async function startLlmflowGate(target: string, options: GateOptions): Promise<LlmflowGate> {
  const gate: LlmflowGate = {
    url: '',
    tooLarge: 0,
    refused: 0,
    notFound: 0,
    forwarded: 0,
    stop: async () => undefined,
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (options.maxBodyBytes !== undefined && body.length > options.maxBodyBytes) {
        gate.tooLarge += 1;
        res.writeHead(413, { 'content-type': 'text/html; charset=utf-8' });
        res.end('<pre>PayloadTooLargeError: request entity too large</pre>');
        return;
      }
      if (options.notFound?.(req.url ?? '')) {
        gate.notFound += 1;
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'Not Found' }));
        return;
      }
      if (options.refuse?.(body.toString('utf8'))) {
        gate.refused += 1;
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'Invalid span (test gate)' }));
        return;
      }
      gate.forwarded += 1;
      forwardRequest(target, req, body, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  gate.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  gate.stop = tracked('LLMFlow gate', () => new Promise<void>((resolve) => server.close(() => resolve())));
  return gate;
}
