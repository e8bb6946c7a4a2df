/**
 * The deployment files, checked as far as a machine without a Docker engine can: docker-compose
 * (Debian's package) reads them, every variable they set is one the code reads, and the
 * services have the health checks, restart policies and start order the README promises.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { SPEC } from '@ccbridge/config';

const ROOT = path.join(__dirname, '..', '..');
const read = (f: string) => readFileSync(path.join(ROOT, f), 'utf8');

interface Service {
  image?: string;
  build?: { target?: string };
  environment?: Record<string, string>;
  healthcheck?: unknown;
  restart?: string;
  depends_on?: Record<string, { condition: string }>;
  command?: string[];
  ports?: unknown[];
}

function composeConfig(files: string[], env: Record<string, string> = {}): { services: Record<string, Service> } {
  const out = execFileSync('docker-compose', [...files.flatMap((f) => ['-f', f]), 'config'], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return parse(out) as { services: Record<string, Service> };
}

test('docker-compose reads docker-compose.yml, alone and with the second destination', () => {
  const base = composeConfig(['docker-compose.yml']);
  assert.deepEqual(Object.keys(base.services).sort(), [
    'bridge-ingest',
    'bridge-worker',
    'llmflow',
    'otel-collector',
    'otelcol-queue-owner',
    'redis',
  ]);
  const second = composeConfig(['docker-compose.yml', 'docker-compose.second.yml'], {
    SECOND_OTLP_ENDPOINT: 'https://otlp.example.com',
  });
  assert.ok(second.services['otel-collector']!.command!.includes('--config=/etc/otelcol-contrib/second.yaml'));
  assert.throws(
    () => composeConfig(['docker-compose.yml', 'docker-compose.second.yml'], { SECOND_OTLP_ENDPOINT: '' }),
    /SECOND_OTLP_ENDPOINT/,
  );
});

test('every variable the compose file gives the bridge is one the bridge reads', () => {
  const known = new Set(SPEC.map((s) => s.env));
  const { services } = composeConfig(['docker-compose.yml']);
  for (const name of ['bridge-ingest', 'bridge-worker']) {
    for (const variable of Object.keys(services[name]!.environment ?? {}))
      assert.ok(known.has(variable), `${name}: ${variable} is read by the bridge`);
  }
  assert.equal(services['bridge-ingest']!.environment!.BRIDGE_ROLE, 'ingest');
  assert.equal(services['bridge-worker']!.environment!.BRIDGE_ROLE, 'worker');
});

test('every variable the compose file gives the Collector is one its configs read', () => {
  const referenced = new Set(
    [...`${read('otel-collector.yaml')}${read('otel-collector.second.yaml')}`.matchAll(/\$\{env:([A-Z0-9_]+)/g)].map(
      (m) => m[1],
    ),
  );
  const { services } = composeConfig(['docker-compose.yml', 'docker-compose.second.yml'], {
    SECOND_OTLP_ENDPOINT: 'https://otlp.example.com',
  });
  for (const variable of Object.keys(services['otel-collector']!.environment ?? {}))
    assert.ok(referenced.has(variable), `${variable} is read by otel-collector.yaml`);
  assert.ok(referenced.has('BRIDGE_OTLP_ENDPOINT'));
});

test('health checks, restart policies, start order, pinned images, non-root bridge', () => {
  const { services } = composeConfig(['docker-compose.yml']);
  for (const name of ['redis', 'bridge-ingest', 'bridge-worker'])
    assert.ok(services[name]!.healthcheck, `${name} has a health check`);
  for (const name of ['redis', 'bridge-ingest', 'bridge-worker', 'otel-collector', 'llmflow'])
    assert.equal(services[name]!.restart, 'unless-stopped', name);
  assert.equal(services['bridge-ingest']!.depends_on!.redis!.condition, 'service_healthy');
  assert.equal(services['bridge-worker']!.depends_on!.redis!.condition, 'service_healthy');
  assert.equal(services['otel-collector']!.depends_on!['bridge-ingest']!.condition, 'service_healthy');
  for (const s of Object.values(services))
    if (s.image) assert.match(s.image, /:\d+(\.\d+)+(-\w+)?$/, `${s.image} is pinned`);
  const collectorVersion = /otel\/opentelemetry-collector-contrib:([\d.]+)/.exec(
    services['otel-collector']!.image!,
  )![1]!;
  assert.match(
    read('test/collector/builder-config.yaml'),
    new RegExp(`ocb-version: v${collectorVersion.replaceAll('.', '\\.')}`),
    'the tested Collector is the release compose runs',
  );
  assert.match(JSON.stringify(services['otel-collector']!.ports), /4317.*4318|4318.*4317/);
  const dockerfile = read('Dockerfile');
  for (const s of Object.values(services))
    if (s.build?.target) assert.match(dockerfile, new RegExp(`^FROM .* AS ${s.build.target}$`, 'm'));
  const bridgeStage = dockerfile.slice(dockerfile.indexOf('AS bridge'));
  assert.match(bridgeStage, /^USER node$/m, 'the bridge runs as a non-root user');
  assert.match(read('docker-compose.yml'), /--appendonly", "yes"/);
});

test('compose: no obsolete version key, one bridge image built once, LLMFlow stopped by an init process, the host reachable, a CA for the build', () => {
  for (const file of ['docker-compose.yml', 'docker-compose.second.yml'])
    assert.doesNotMatch(read(file), /^version:/m, `${file} has no version key`);
  const { services } = composeConfig(['docker-compose.yml']);
  const [ingest, worker] = [services['bridge-ingest']!, services['bridge-worker']!];
  assert.equal(worker.image, ingest.image, 'one image for both bridge services');
  assert.ok(ingest.build && !worker.build, 'built once, by bridge-ingest');
  assert.equal(
    (worker as { pull_policy?: string }).pull_policy,
    'never',
    'the worker never pulls the image from a registry',
  );
  assert.equal((services.llmflow as { init?: boolean }).init, true, 'LLMFlow gets SIGTERM through an init process');
  for (const s of [ingest, worker])
    assert.match(JSON.stringify((s as { extra_hosts?: unknown }).extra_hosts), /host\.docker\.internal.host-gateway/);
  const dockerfile = read('Dockerfile');
  for (const stage of ['build', 'llmflow']) {
    const body = dockerfile.split(/^FROM /m).find((st) => new RegExp(`AS ${stage}$`, 'm').test(st))!;
    assert.match(body, /^ARG EXTRA_CA_CERTS$/m, `the ${stage} stage takes the CA`);
    assert.match(body, /NODE_EXTRA_CA_CERTS=.*npm (ci|init)/s, `npm in the ${stage} stage trusts it`);
  }
  assert.equal((ingest.build as { args?: Record<string, string> }).args?.EXTRA_CA_CERTS, '');
});

test('the LLMFlow image installs the versions the tests run against', () => {
  const peers = (JSON.parse(read('test/peers/package.json')) as { dependencies: Record<string, string> }).dependencies;
  const stage = read('Dockerfile')
    .split(/^FROM /m)
    .find((st) => /AS llmflow$/m.test(st))!;
  for (const name of ['llmflow', 'bun', 'uuid'])
    assert.match(stage, new RegExp(`\\b${name}@${peers[name]!.replaceAll('.', '\\.')}\\b`), name);
  assert.doesNotMatch(stage, /claude-code/);
});
