/**
 * One request to LLMFlow, its answer read whole, on `node:http` (`node:https`) with connections
 * kept alive. Not the global `fetch`: the worker posts once or twice per batch, and fetch (a
 * WHATWG Request, Response and body stream per call) took about six times the CPU per post;
 * nor undici's `request`, as cheap per post but, like fetch, parsing HTTP in WebAssembly: about
 * 20 MiB more resident memory in each worker than node's native parser (docs/BENCHMARKS.md,
 * 2026-12-07).
 */
import http from 'node:http';
import https from 'node:https';

export interface HttpAnswer {
  status: number;
  text: string;
}

/**
 * Idle connections close after 4 s, within the keep-alive time of common servers (express: 5 s);
 * a server's own `Keep-Alive: timeout` shortens it (node's agent reads it).
 */
const agents = {
  http: new http.Agent({ keepAlive: true, timeout: 4_000 }),
  https: new https.Agent({ keepAlive: true, timeout: 4_000 }),
};

function once(url: URL, method: string, timeoutMs: number, body: Buffer | undefined, headers: Record<string, string>) {
  const [client, agent] = url.protocol === 'https:' ? [https, agents.https] : [http, agents.http];
  return new Promise<{ answer?: HttpAnswer; reused: boolean; err?: Error }>((resolve) => {
    const done = (outcome: { answer?: HttpAnswer; err?: Error }) => {
      clearTimeout(timer);
      resolve({ ...outcome, reused: req.reusedSocket });
    };
    const req = client.request(
      url,
      {
        method,
        agent,
        headers: { ...(body && { 'content-type': 'application/json', 'content-length': body.length }), ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          done({ answer: { status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') } }),
        );
        res.on('close', () => {
          if (!res.complete) done({ err: new Error('the answer was cut off') });
        });
      },
    );
    // Set once the request exists: a request node refuses at once (a bad header) throws, and leaves no timer.
    const timer = setTimeout(() => req.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (err) => done({ err }));
    req.end(body);
  });
}

/**
 * Sends a request (JSON `body`, if any) and reads the answer; throws the network's error when
 * none comes whole within timeoutMs. A kept-alive connection the server closed as it was reused
 * is tried once more on a new one (node's advice): the server never read that request.
 */
export async function httpRequest(
  method: 'GET' | 'POST',
  url: string,
  timeoutMs: number,
  body?: Buffer | string,
  headers: Record<string, string> = {},
): Promise<HttpAnswer> {
  const target = new URL(url);
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  let outcome = await once(target, method, timeoutMs, bytes, headers);
  if (outcome.err && outcome.reused && (outcome.err as NodeJS.ErrnoException).code === 'ECONNRESET')
    outcome = await once(target, method, timeoutMs, bytes, headers);
  if (outcome.err) throw outcome.err;
  return outcome.answer!;
}
