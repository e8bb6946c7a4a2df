/**
 * A relay in front of the bridge's OTLP/HTTP port, where Claude Code sends: it passes every
 * request on and keeps the metrics requests it passed (what Claude Code sent), and, while
 * `dropLogs` is set, answers logs requests 200 and discards them (as a proxy losing them would).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import zlib from 'node:zlib';
import { decodeExportRequest, type ExportMetricsRequest } from '@ccbridge/otlp';
import { forwardRequest } from './forward';

export interface OtlpRelay {
  url: string;
  dropLogs: boolean;
  /** Logs requests dropped. */
  dropped: number;
  /** Metrics requests passed on, decoded. */
  metrics: ExportMetricsRequest[];
  close(): Promise<void>;
}

/** `target`: the bridge's base URL, or a function giving it (a peer started after the relay). */
export async function startOtlpRelay(target: string | (() => string)): Promise<OtlpRelay> {
  const relay: OtlpRelay = { url: '', dropLogs: false, dropped: 0, metrics: [], close: async () => undefined };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const type = String(req.headers['content-type'] ?? 'application/x-protobuf');
      if (relay.dropLogs && req.url?.startsWith('/v1/logs')) {
        relay.dropped += 1;
        res.writeHead(200, { 'content-type': type });
        res.end(type.includes('json') ? '{}' : '');
        return;
      }
      forwardRequest(typeof target === 'string' ? target : target(), req, body, res, (status) => {
        if (status !== 200 || !req.url?.startsWith('/v1/metrics')) return;
        const plain = req.headers['content-encoding'] === 'gzip' ? zlib.gunzipSync(body) : body;
        relay.metrics.push(decodeExportRequest('metrics', plain, type.includes('json') ? 'json' : 'protobuf'));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  relay.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  relay.close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  return relay;
}

/** The tokens of `claude_code.token.usage` in metrics requests (delta temporality), as `model type` → tokens. */
export function sentTokens(requests: ExportMetricsRequest[]): Record<string, number> {
  const sums: Record<string, number> = {};
  for (const r of requests) {
    for (const rm of r.resourceMetrics ?? []) {
      for (const sm of rm.scopeMetrics ?? []) {
        for (const m of (sm.metrics ?? []) as {
          name?: string;
          sum?: {
            dataPoints?: {
              attributes?: { key: string; value?: { stringValue?: string } }[];
              asDouble?: number;
              asInt?: string;
            }[];
          };
        }[]) {
          if (m.name !== 'claude_code.token.usage') continue;
          for (const p of m.sum?.dataPoints ?? []) {
            const attr = (k: string) => p.attributes?.find((a) => a.key === k)?.value?.stringValue;
            const key = `${attr('model')} ${attr('type')}`;
            sums[key] = (sums[key] ?? 0) + Number(p.asInt ?? p.asDouble ?? 0);
          }
        }
      }
    }
  }
  return sums;
}
