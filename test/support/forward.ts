/** What the tests' relays share: a request passed on to a target, and its answer passed back. */
import type http from 'node:http';

/**
 * Sends `req` (its body already read) on to `target` with its content type and encoding, and
 * answers `res` with what came back (502 when nothing did). `seen` is told the answer's status first.
 */
export function forwardRequest(
  target: string,
  req: http.IncomingMessage,
  body: Buffer,
  res: http.ServerResponse,
  seen?: (status: number) => void,
): void {
  const type = String(req.headers['content-type'] ?? 'application/json');
  const headers: Record<string, string> = { 'content-type': type };
  if (req.headers['content-encoding']) headers['content-encoding'] = String(req.headers['content-encoding']);
  fetch(`${target}${req.url}`, { method: req.method, headers, body: req.method === 'GET' ? undefined : body })
    .then(async (r) => {
      seen?.(r.status);
      res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? type });
      res.end(Buffer.from(await r.arrayBuffer()));
    })
    .catch(() => {
      res.writeHead(502);
      res.end();
    });
}
