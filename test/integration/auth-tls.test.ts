/**
 * Bearer tokens and TLS on both receivers of a real bridge process: no token or a wrong one is
 * 401 (HTTP, with WWW-Authenticate) or UNAUTHENTICATED (gRPC), before the body is read; either
 * of two tokens is taken (rotation); the receivers speak TLS only; the refusals are counted.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { payloads } from '../support/fixtures';
import { exportGrpc } from '../support/otlp-grpc';
import { post, startBridge, startRedis, tempDir, type BridgePeer, type RedisPeer } from '../support/peers';

const TOKENS = ['first-token-0123456789', 'second-token-abcdefghij'];
let redis: RedisPeer;
let bridge: BridgePeer;
let ca: Buffer;

before(async () => {
  const dir = tempDir('tls');
  const [cert, key] = [path.join(dir, 'cert.pem'), path.join(dir, 'key.pem')];
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  ca = readFileSync(cert);
  redis = await startRedis();
  bridge = await startBridge({
    REDIS_URL: redis.url,
    BRIDGE_ROLE: 'ingest',
    BRIDGE_AUTH_TOKENS: TOKENS.join(','),
    BRIDGE_TLS_CERT_FILE: cert,
    BRIDGE_TLS_KEY_FILE: key,
  });
});
after(async () => {
  await bridge?.stop();
  await redis?.stop();
});

const logs = payloads('protobuf', 'tool').find((p) => p.signal === 'logs')!.body;

function postTls(
  headers: Record<string, string>,
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      `https://127.0.0.1:${bridge.port}/v1/logs`,
      { method: 'POST', ca, headers: { 'content-type': 'application/x-protobuf', ...headers } },
      (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end(logs);
  });
}

test('HTTPS: no token, a wrong one, or another scheme is 401 with WWW-Authenticate; either accepted token is 200', async () => {
  for (const authorization of [
    undefined,
    'Bearer not-the-right-token-000',
    `Basic ${TOKENS[0]}`,
    `Bearer ${TOKENS[0]}x`,
  ]) {
    const r = await postTls(authorization ? { authorization } : {});
    assert.equal(r.status, 401, String(authorization));
    assert.equal(r.headers['www-authenticate'], 'Bearer');
  }
  for (const token of TOKENS) assert.equal((await postTls({ authorization: `Bearer ${token}` })).status, 200, token);
});

test('plain HTTP to the TLS receiver gets no OTLP answer', async () => {
  await assert.rejects(
    post(`${bridge.url}/v1/logs`, logs, 'application/x-protobuf', { authorization: `Bearer ${TOKENS[0]}` }),
  );
});

test('gRPC over TLS: no token is UNAUTHENTICATED, an accepted one is OK; without TLS the call fails', async () => {
  const address = `127.0.0.1:${bridge.grpcPort}`;
  assert.equal((await exportGrpc(address, 'logs', logs, false, { ca })).code, grpc.status.UNAUTHENTICATED);
  assert.equal(
    (
      await exportGrpc(address, 'logs', logs, false, {
        ca,
        metadata: { authorization: 'Bearer wrong-token-000000000' },
      })
    ).code,
    grpc.status.UNAUTHENTICATED,
  );
  assert.equal(
    (await exportGrpc(address, 'logs', logs, true, { ca, metadata: { authorization: `Bearer ${TOKENS[1]}` } })).code,
    grpc.status.OK,
  );
  assert.equal(
    (await exportGrpc(address, 'logs', logs, false, { metadata: { authorization: `Bearer ${TOKENS[1]}` } })).code,
    grpc.status.UNAVAILABLE,
  );
});

test('refusals are counted by reason on /metrics', async () => {
  const text = await (await fetch(`${bridge.adminUrl}/metrics`)).text();
  assert.match(text, /ccbridge_receiver_refused_requests_total\{transport="http",reason="auth"\} 4/);
  assert.match(text, /ccbridge_receiver_refused_requests_total\{transport="grpc",reason="auth"\} 2/);
});
