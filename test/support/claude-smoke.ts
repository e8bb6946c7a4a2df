/**
 * Smoke check of the real Claude Code against the Anthropic stand-in: runs every scripted
 * scenario and prints what Claude Code did and which telemetry events it sent.
 *
 *   node --import tsx test/support/claude-smoke.ts
 *
 * A script, not a test: it asserts nothing beyond exiting 1 when a run ends otherwise than meant
 * (exit code, or no session id).
 * An OTLP recorder (node:http, plus node:http2 for gRPC) records path, content type and size of
 * each request and decodes the bodies (JSON, protobuf, gRPC-framed protobuf).
 */
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import zlib from 'node:zlib';
import { attributesToRecord, decodeExportRequest, type AttributeValue, type ExportLogsRequest } from '@ccbridge/otlp';
import { startAnthropicStandin } from './anthropic-standin';
import { runClaude, type ClaudeRun, type OtlpProtocol } from './claude';

interface Received {
  at: number;
  transport: 'http' | 'grpc';
  path: string;
  contentType: string;
  contentEncoding: string;
  bytes: number;
  /** Event records, when the request carried logs and could be decoded. */
  events?: Record<string, AttributeValue>[];
  error?: string;
}

function eventsOf(request: ExportLogsRequest): Record<string, AttributeValue>[] {
  const out: Record<string, AttributeValue>[] = [];
  for (const rl of request.resourceLogs ?? [])
    for (const sl of rl.scopeLogs ?? [])
      for (const r of sl.logRecords ?? []) out.push(attributesToRecord(r.attributes));
  return out;
}

function decodeLogs(body: Buffer, format: 'json' | 'protobuf'): Pick<Received, 'events' | 'error'> {
  try {
    return { events: eventsOf(decodeExportRequest('logs', body, format)) };
  } catch (err) {
    return { error: String(err) };
  }
}

function inflate(body: Buffer, encoding: string): Buffer {
  if (encoding === 'gzip') return zlib.gunzipSync(body);
  if (encoding === 'deflate') return zlib.inflateSync(body);
  if (encoding === 'br') return zlib.brotliDecompressSync(body);
  return body;
}

/** OTLP/HTTP (JSON or protobuf) and OTLP/gRPC on two ports; counts TCP connections on each. */
async function startRecorder() {
  const received: Received[] = [];
  const connections = { http: 0, grpc: 0 };

  const httpServer = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const contentType = String(req.headers['content-type'] ?? '');
      const contentEncoding = String(req.headers['content-encoding'] ?? '');
      const rec: Received = {
        at: Date.now(),
        transport: 'http',
        path: req.url ?? '',
        contentType,
        contentEncoding,
        bytes: 0,
      };
      try {
        const body = inflate(Buffer.concat(chunks), contentEncoding);
        rec.bytes = body.length;
        if (rec.path === '/v1/logs')
          Object.assign(rec, decodeLogs(body, contentType.includes('json') ? 'json' : 'protobuf'));
      } catch (err) {
        rec.error = String(err);
      }
      received.push(rec);
      const json = contentType.includes('json');
      res.writeHead(200, { 'content-type': json ? 'application/json' : 'application/x-protobuf' });
      res.end(json ? '{}' : undefined);
    });
  });
  httpServer.on('connection', () => connections.http++);

  // A minimal gRPC server: one length-prefixed message in, an empty one and grpc-status 0 out.
  const grpcServer = http2.createServer();
  grpcServer.on('connection', () => connections.grpc++);
  grpcServer.on('stream', (stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      const path = String(headers[':path'] ?? '');
      const contentEncoding = String(headers['grpc-encoding'] ?? '');
      const rec: Received = {
        at: Date.now(),
        transport: 'grpc',
        path,
        contentType: String(headers['content-type'] ?? ''),
        contentEncoding,
        bytes: 0,
      };
      try {
        const frame = Buffer.concat(chunks);
        const compressed = frame[0] === 1;
        const body = frame.subarray(5, 5 + frame.readUInt32BE(1));
        const message = compressed ? inflate(body, contentEncoding || 'gzip') : body;
        rec.bytes = message.length;
        if (path.includes('LogsService')) Object.assign(rec, decodeLogs(message, 'protobuf'));
      } catch (err) {
        rec.error = String(err);
      }
      received.push(rec);
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': '' }));
      stream.end(Buffer.alloc(5));
    });
  });

  const sockets = new Set<Socket>();
  for (const s of [httpServer, grpcServer]) {
    s.on('connection', (sock: Socket) => {
      sockets.add(sock);
      sock.once('close', () => sockets.delete(sock));
    });
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  }
  const port = (s: http.Server | http2.Http2Server) => (s.address() as AddressInfo).port;
  return {
    received,
    connections,
    httpUrl: `http://127.0.0.1:${port(httpServer)}`,
    grpcUrl: `http://127.0.0.1:${port(grpcServer)}`,
    async stop() {
      for (const sock of sockets) sock.destroy();
      await Promise.all([httpServer, grpcServer].map((s) => new Promise((r) => s.close(r))));
    },
  };
}

interface Scenario {
  name: string;
  prompt: string;
  protocol: OtlpProtocol;
  allowedTools?: string[];
  /** The name of an earlier scenario whose session this one resumes. */
  resumes?: string;
  /** Claude Code is meant to give up (exit 1). */
  expectFailure?: boolean;
}

const ALLOWED = ['Bash(echo:*)', 'Read'];
const SCENARIOS: Scenario[] = [
  { name: 'default', prompt: 'What is 2+2?', protocol: 'http/json' },
  { name: 'USE_TOOL', prompt: 'Say one. USE_TOOL', protocol: 'http/json', allowedTools: ALLOWED },
  { name: 'TWO_TOOLS', prompt: 'Do TWO_TOOLS', protocol: 'http/json', allowedTools: ALLOWED },
  { name: 'PARALLEL_TOOLS', prompt: 'Do PARALLEL_TOOLS', protocol: 'http/json', allowedTools: ALLOWED },
  { name: 'REFUSED_TOOL', prompt: 'Clean up. REFUSED_TOOL', protocol: 'http/json', allowedTools: ALLOWED },
  { name: 'FAIL_ONCE', prompt: 'What is 2+2? FAIL_ONCE', protocol: 'http/json' },
  { name: 'FAIL_ALWAYS', prompt: 'What is 2+2? FAIL_ALWAYS', protocol: 'http/json', expectFailure: true },
  { name: 'resume default', prompt: 'And 3+3?', protocol: 'http/json', resumes: 'default' },
  { name: 'USE_TOOL protobuf', prompt: 'Say one. USE_TOOL', protocol: 'http/protobuf', allowedTools: ALLOWED },
  { name: 'USE_TOOL grpc', prompt: 'Say one. USE_TOOL', protocol: 'grpc', allowedTools: ALLOWED },
];

/** Attributes worth printing next to an event's name. */
const DETAIL: Record<string, string[]> = {
  tool_decision: ['tool_name', 'decision', 'source', 'tool_use_id'],
  tool_result: ['tool_name', 'success', 'error', 'tool_use_id'],
  api_request: ['model', 'request_id', 'input_tokens', 'output_tokens', 'duration_ms'],
  api_error: ['model', 'status_code', 'error', 'attempt', 'duration_ms', 'request_id'],
  api_retries_exhausted: ['status_code', 'error', 'total_attempts', 'total_retry_duration_ms'],
  plugin_loaded: ['plugin.name'],
};

async function main() {
  const started = Date.now();
  const api = await startAnthropicStandin();
  const otlp = await startRecorder();
  const sessions = new Map<string, string>();
  let failures = 0;
  try {
    for (const sc of SCENARIOS) {
      otlp.received.length = 0;
      const connectionsBefore = { ...otlp.connections };
      const apiBefore = api.requests.length;
      const resume = sc.resumes ? sessions.get(sc.resumes) : undefined;
      if (sc.resumes && !resume) {
        console.log(`\n== ${sc.name}: skipped, no session from ${sc.resumes}`);
        continue;
      }
      const run: ClaudeRun = await runClaude({
        prompt: sc.prompt,
        apiUrl: api.url,
        otlpEndpoint: sc.protocol === 'grpc' ? otlp.grpcUrl : otlp.httpUrl,
        protocol: sc.protocol,
        allowedTools: sc.allowedTools,
        resume,
      });
      const exitedAt = Date.now();
      // Anything still to come would be a batch Claude Code failed to flush before exiting.
      await new Promise((r) => setTimeout(r, 1_500));
      if (run.sessionId) sessions.set(sc.name, run.sessionId);
      if (run.exitCode !== (sc.expectFailure ? 1 : 0) || !run.sessionId) failures++;

      console.log(`\n== ${sc.name} [${sc.protocol}]${resume ? ` resuming ${resume}` : ''}`);
      console.log(
        `exit ${run.exitCode}${run.timedOut ? ' (timed out)' : ''} in ${run.durationMs} ms; session ${run.sessionId}; result ${JSON.stringify(run.result)}`,
      );
      if (run.json?.permission_denials && (run.json.permission_denials as unknown[]).length)
        console.log(`permission_denials ${JSON.stringify(run.json.permission_denials)}`);
      if (run.stderr.trim()) console.log(`stderr: ${run.stderr.trim().slice(0, 500)}`);
      const calls = api.requests.slice(apiBefore);
      const messages = (c: (typeof calls)[number]) =>
        ((c.body as { messages?: unknown[] } | undefined)?.messages ?? []).length;
      console.log(
        `API calls: ${calls.map((c) => `${c.method} ${c.path}${c.reply ? ` (${messages(c)} messages) -> ${c.reply}` : ''}`).join('; ')}`,
      );
      const conns = {
        http: otlp.connections.http - connectionsBefore.http,
        grpc: otlp.connections.grpc - connectionsBefore.grpc,
      };
      console.log(`OTLP: ${otlp.received.length} requests, TCP connections http ${conns.http} grpc ${conns.grpc}`);
      for (const r of otlp.received) {
        console.log(
          `  ${r.transport} ${r.path} ${r.contentType}${r.contentEncoding ? ` (${r.contentEncoding})` : ''} ${r.bytes} B, ${r.at - exitedAt >= 0 ? `${r.at - exitedAt} ms AFTER exit` : `${exitedAt - r.at} ms before exit`}${r.events ? `, ${r.events.length} events` : ''}${r.error ? ` ERROR ${r.error}` : ''}`,
        );
      }
      const events = otlp.received.flatMap((r) => r.events ?? []);
      // Claude Code sends these attributes as scalars (ids and names as strings, the sequence as an int).
      const sessionIds = new Set(events.map((e) => e['session.id'] as string | undefined));
      const promptIds = new Set(events.map((e) => e['prompt.id'] as string | undefined).filter((p) => p !== undefined));
      console.log(
        `events (${events.length}; * = no prompt.id; session.id values ${[...sessionIds].join(',')}; prompt.id values ${[...promptIds].join(',')}):`,
      );
      for (const e of events) {
        const name = e['event.name'] as string;
        const detail = (DETAIL[name] ?? [])
          .filter((k) => e[k] !== undefined)
          .map((k) => `${k}=${JSON.stringify(e[k])}`);
        console.log(
          `  #${e['event.sequence'] as string | number | undefined} ${e['prompt.id'] === undefined ? '*' : ' '}${name}${detail.length ? ` ${detail.join(' ')}` : ''}`,
        );
      }
      const late = otlp.received.filter((r) => r.at > exitedAt);
      console.log(
        `flush: ${late.length ? `${late.length} request(s) arrived after exit` : 'everything arrived before exit'}`,
      );
    }
  } finally {
    await otlp.stop();
    await api.stop();
  }
  console.log(`\n${SCENARIOS.length} runs in ${Date.now() - started} ms; ${failures} failed`);
  process.exitCode = failures ? 1 : 0;
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
