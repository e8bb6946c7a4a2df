/**
 * One POST to LLMFlow, its answer read whole. On undici's `request` rather than the global
 * `fetch`: the worker posts once or twice per batch, and fetch (a WHATWG Request, Response and
 * body stream per call) took about six times the CPU of `request` per post (docs/BENCHMARKS.md,
 * 2026-12-07): some 10% of the worker's. undici is the client Node's own fetch is built on; its
 * 6.x line is pinned because it runs on Node >= 18.17 (7.x needs 20.18).
 */
import { request } from 'undici';

export interface HttpAnswer {
  status: number;
  /** The body as text; empty when it could not be read. */
  text: string;
}

/** Throws (the network's error) when there is no answer within timeoutMs, the body's included. */
export async function postJson(
  url: string,
  body: Buffer | string,
  timeoutMs: number,
  headers: Record<string, string> = {},
): Promise<HttpAnswer> {
  const answer = await request(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
    signal: AbortSignal.timeout(timeoutMs),
  });
  return { status: answer.statusCode, text: await answer.body.text().catch(() => '') };
}
