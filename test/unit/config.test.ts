import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, SPEC, loadConfig, unknownVariables } from '@ccbridge/config';
import { DEFAULT_LIFECYCLE, lifecycleConfigOf } from '@ccbridge/claude-events';

test('defaults hold when nothing is set', () => {
  const c = loadConfig({});
  assert.equal(c.role, 'all');
  assert.equal(c.redisUrl, undefined);
  assert.equal(c.llmflowUrl, 'http://127.0.0.1:1337', 'where a stock LLMFlow listens');
  assert.equal(c.otlpHttpPort, 4318);
  assert.equal(c.otlpGrpcPort, 4317);
  assert.equal(c.interactionIdleMs, 30_000);
});

test('values are parsed: ports, URLs, sizes, roles', () => {
  const c = loadConfig({
    BRIDGE_ROLE: 'Worker',
    REDIS_URL: 'redis://redis:6379/2',
    LLMFLOW_URL: 'http://llmflow:3000/',
    OTLP_HTTP_PORT: '14318',
    BRIDGE_MAX_BODY_BYTES: '8MiB',
    BRIDGE_INTERACTION_IDLE_MS: '1500',
  });
  assert.equal(c.role, 'worker');
  assert.equal(c.redisUrl, 'redis://redis:6379/2');
  assert.equal(c.llmflowUrl, 'http://llmflow:3000');
  assert.equal(c.otlpHttpPort, 14318);
  assert.equal(c.maxBodyBytes, 8 * 1024 * 1024);
  assert.equal(c.interactionIdleMs, 1500);
});

const BAD: Record<string, string> = {
  BRIDGE_ROLE: 'both',
  REDIS_URL: 'http://localhost:6379',
  LLMFLOW_URL: 'localhost:3000',
  OTLP_HTTP_PORT: '70000',
  OTLP_HTTP_HOST: '  ',
  OTLP_GRPC_PORT: 'grpc',
  OTLP_GRPC_HOST: '\t',
  BRIDGE_METRICS_PORT: '-1',
  BRIDGE_PORTS_FILE: ' ',
  BRIDGE_MAX_ATTRIBUTES: 'many',
  BRIDGE_MAX_VALUE_BYTES: '1TiB',
  BRIDGE_AUTH_TOKENS: 'short,',
  BRIDGE_TLS_CERT_FILE: '/nonexistent/cert.pem',
  BRIDGE_TLS_KEY_FILE: '/nonexistent/key.pem',
  BRIDGE_METRICS_HOST: ' ',
  BRIDGE_METRICS_OTLP_URL: 'collector:4318',
  BRIDGE_SELF_TRACES_URL: 'grpc://jaeger:4317',
  BRIDGE_MAX_BODY_BYTES: '4GB',
  BRIDGE_MAX_CONCURRENT_REQUESTS: '0',
  BRIDGE_QUEUE_MAX_WAITING: '-1',
  BRIDGE_QUEUE_MAX_BYTES: '2GiB',
  BRIDGE_QUEUE_METRICS_MAX_BYTES: '1 GB',
  BRIDGE_FORWARD_METRICS: 'sometimes',
  BRIDGE_SESSION_SETTLE_MS: '2m',
  BRIDGE_INTERACTION_IDLE_MS: '1.5',
  BRIDGE_TURN_TIMEOUT_MS: '1h',
  BRIDGE_GAP_WAIT_MS: '99',
  BRIDGE_PROCESS_WAIT_MS: '-5',
  REDIS_CLUSTER: 'maybe',
  BRIDGE_WORKER_CONCURRENCY: '0x10',
  BRIDGE_EXPORT_TIMEOUT_MS: 'soon',
  BRIDGE_EXPORT_MAX_SPANS: '1e3',
  BRIDGE_SPAN_MAX_BYTES: '100',
  BRIDGE_DEAD_LETTER_MAX: 'all',
  BRIDGE_JOB_ATTEMPTS: '0',
  BRIDGE_SHUTDOWN_TIMEOUT_MS: '10s',
  LOG_LEVEL: 'verbose',
  BRIDGE_DATA_DIR: ' ',
  BRIDGE_NATIVE_TRACES: 'native',
  BRIDGE_EVENT_ROWS: 'some',
  BRIDGE_PRIVACY_PROMPTS: 'redact',
  BRIDGE_PRIVACY_TOOL_DETAILS: 'yes',
  BRIDGE_PRIVACY_USER_IDS: 'mask',
};

test('every variable has a bad-value case here', () => {
  assert.deepEqual(Object.keys(BAD).sort(), SPEC.map((s) => s.env).sort());
});

test('an empty variable means unset, like an unset one', () => {
  assert.deepEqual(loadConfig({ BRIDGE_JOB_ATTEMPTS: '', OTLP_GRPC_HOST: '' }), loadConfig({}));
});

for (const [name, value] of Object.entries(BAD)) {
  test(`a bad ${name} stops start-up with a message naming it`, () => {
    assert.throws(
      () => loadConfig({ [name]: value }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.variable, name);
        assert.match(err.message, new RegExp(`^${name}=`));
        assert.match(err.message, /expected/);
        return true;
      },
    );
  });
}

test('REDIS_CLUSTER needs REDIS_URL, a node of the cluster', () => {
  assert.throws(() => loadConfig({ REDIS_CLUSTER: 'true' }), /REDIS_CLUSTER="true" is not valid: expected REDIS_URL/);
  assert.equal(loadConfig({ REDIS_CLUSTER: 'yes', REDIS_URL: 'redis://10.0.0.1:7000' }).redisCluster, true);
});

test('BRIDGE_* variables that no setting reads are reported (a misspelling is not silently ignored)', () => {
  assert.deepEqual(unknownVariables({ BRIDGE_INTERACTION_IDLE: '5', BRIDGE_ROLE: 'all', PATH: '/bin' }), [
    'BRIDGE_INTERACTION_IDLE',
  ]);
});

test('a port of 0 asks the system for any free one, on each port at once', () => {
  const c = loadConfig({ OTLP_HTTP_PORT: '0', OTLP_GRPC_PORT: '0', BRIDGE_METRICS_PORT: '0' });
  assert.deepEqual([c.otlpHttpPort, c.otlpGrpcPort, c.metricsPort], [0, 0, 0]);
  assert.throws(
    () => loadConfig({ OTLP_GRPC_PORT: '65536' }),
    /OTLP_GRPC_PORT="65536" is not valid: expected a port from 1 to 65535, or 0 for any free port/,
  );
});

test("the bridge's own traces may not go to its own receiver (a loop), nor metrics share the OTLP port", () => {
  for (const url of ['http://127.0.0.1:4318/v1/traces', 'http://localhost:4318/v1/traces', 'http://0.0.0.0:4318']) {
    assert.throws(
      () => loadConfig({ BRIDGE_SELF_TRACES_URL: url }),
      (err: ConfigError) => err.variable === 'BRIDGE_SELF_TRACES_URL' && /loop/.test(err.message),
      url,
    );
  }
  assert.equal(
    loadConfig({ BRIDGE_SELF_TRACES_URL: 'http://127.0.0.1:4318/v1/traces', OTLP_HTTP_PORT: '14318' }).selfTracesUrl,
    'http://127.0.0.1:4318/v1/traces',
  );
  assert.equal(
    loadConfig({ BRIDGE_SELF_TRACES_URL: 'http://jaeger:4318/v1/traces' }).selfTracesUrl,
    'http://jaeger:4318/v1/traces',
  );
  assert.equal(
    loadConfig({ BRIDGE_SELF_TRACES_URL: 'http://127.0.0.1:4318/v1/traces', BRIDGE_ROLE: 'worker' }).selfTracesUrl,
    'http://127.0.0.1:4318/v1/traces',
    'a worker has no receiver',
  );
  assert.throws(
    () => loadConfig({ BRIDGE_METRICS_PORT: '4318' }),
    /BRIDGE_METRICS_PORT="4318" is not valid: expected a port other than OTLP_HTTP_PORT/,
  );
  assert.equal(loadConfig({}).metricsPort, 9464);
});

test('bearer tokens: a comma-separated list; TLS: a certificate and a key, both or neither', () => {
  assert.deepEqual(
    loadConfig({ BRIDGE_AUTH_TOKENS: ' first-token-0123456789 , second-token-abcdefghij ' }).authTokens,
    ['first-token-0123456789', 'second-token-abcdefghij'],
  );
  assert.deepEqual(loadConfig({}).authTokens, []);
  assert.throws(
    () => loadConfig({ BRIDGE_AUTH_TOKENS: 'first-token-0123456789,short' }),
    (err: Error) => /BRIDGE_AUTH_TOKENS/.test(err.message) && !err.message.includes('first-token'),
    'the message names the variable, never a token',
  );
  const file = __filename;
  assert.throws(
    () => loadConfig({ BRIDGE_TLS_CERT_FILE: file }),
    /BRIDGE_TLS_KEY_FILE="" is not valid: expected a file as well, since BRIDGE_TLS_CERT_FILE is set/,
  );
  assert.throws(() => loadConfig({ BRIDGE_TLS_KEY_FILE: file }), /BRIDGE_TLS_CERT_FILE="" is not valid/);
  assert.equal(loadConfig({ BRIDGE_TLS_CERT_FILE: file, BRIDGE_TLS_KEY_FILE: file }).tlsKeyFile, file);
});

test("the bridge's own OTLP export: off unless OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER name otlp; an endpoint alone turns nothing on", () => {
  const off = loadConfig({
    OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
    OTEL_SERVICE_NAME: 'x',
  }).selfTelemetry;
  assert.deepEqual([off.traces, off.metrics, off.warnings], [false, false, []]);
  const traces = loadConfig({
    OTEL_TRACES_EXPORTER: 'otlp',
    OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/',
  }).selfTelemetry;
  assert.deepEqual(
    [traces.traces, traces.metrics, traces.endpoints],
    [true, false, { traces: 'http://collector:4318/v1/traces' }],
  );
  const both = loadConfig({
    OTEL_TRACES_EXPORTER: 'otlp',
    OTEL_METRICS_EXPORTER: 'prometheus,otlp',
    OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
    OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4317',
    OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: 'https://metrics.example/otlp',
  }).selfTelemetry;
  assert.deepEqual(both.endpoints, { traces: 'http://collector:4317', metrics: 'https://metrics.example/otlp' });
  assert.equal(
    loadConfig({ OTEL_METRICS_EXPORTER: 'prometheus' }).selfTelemetry.metrics,
    false,
    '/metrics is Prometheus already',
  );
  assert.equal(
    loadConfig({
      OTEL_TRACES_EXPORTER: 'otlp',
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318',
      OTEL_SDK_DISABLED: 'true',
    }).selfTelemetry.traces,
    false,
  );
});

test("a Claude Code user's shell never turns the bridge's own export on, at itself or elsewhere", () => {
  const shell = {
    OTEL_LOGS_EXPORTER: 'otlp',
    OTEL_METRICS_EXPORTER: 'otlp',
    OTEL_TRACES_EXPORTER: 'otlp',
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
  };
  for (const env of [
    { ...shell, OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' },
    { ...shell, OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4317', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' },
    { ...shell, OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' },
    {
      ...shell,
      OTEL_LOGS_EXPORTER: 'none',
      CLAUDE_CODE_ENABLE_TELEMETRY: '1',
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
    },
  ]) {
    const self = loadConfig(env).selfTelemetry;
    assert.deepEqual([self.traces, self.metrics], [false, false], JSON.stringify(env));
    assert.equal(self.warnings.length, 2);
    assert.match(
      self.warnings[0]!,
      /OTEL_TRACES_EXPORTER=otlp is set aside: with (OTEL_LOGS_EXPORTER=otlp|CLAUDE_CODE_ENABLE_TELEMETRY=1) these OTEL_\* variables are a Claude Code client's/,
    );
  }
  // The operator's own opt-in: the same variables with no logs exporter of a client around.
  const own = loadConfig({
    ...shell,
    OTEL_LOGS_EXPORTER: 'none',
    OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
  }).selfTelemetry;
  assert.deepEqual([own.traces, own.metrics, own.warnings], [true, true, []]);
});

test("the bridge's own export may not name its own receiver, the SDK's default endpoint included", () => {
  const cases: [Record<string, string>, string, string][] = [
    [{ OTEL_TRACES_EXPORTER: 'otlp' }, 'OTEL_EXPORTER_OTLP_ENDPOINT', ''],
    [
      { OTEL_METRICS_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://localhost:4318' },
      'OTEL_EXPORTER_OTLP_ENDPOINT',
      'http://localhost:4318',
    ],
    [
      { OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://127.0.0.1:4317' },
      'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT',
      'http://127.0.0.1:4317',
    ],
    [
      {
        OTEL_TRACES_EXPORTER: 'otlp',
        OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
        OTLP_GRPC_PORT: '14317',
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://[::1]:14317',
      },
      'OTEL_EXPORTER_OTLP_ENDPOINT',
      'http://[::1]:14317',
    ],
    [
      { BRIDGE_METRICS_OTLP_URL: 'http://127.0.0.1:4318/v1/metrics' },
      'BRIDGE_METRICS_OTLP_URL',
      'http://127.0.0.1:4318/v1/metrics',
    ],
  ];
  for (const [env, variable, value] of cases) {
    assert.throws(
      () => loadConfig(env),
      (err: ConfigError) =>
        err.variable === variable &&
        err.message.startsWith(`${variable}=${JSON.stringify(value)}`) &&
        /loop/.test(err.message),
      JSON.stringify(env),
    );
  }
  assert.equal(
    loadConfig({ OTEL_TRACES_EXPORTER: 'otlp', OTLP_HTTP_PORT: '14318', OTLP_GRPC_PORT: '14317' }).selfTelemetry
      .endpoints.traces,
    'http://localhost:4318/v1/traces',
    'the default is not this bridge when it listens elsewhere',
  );
  assert.equal(
    loadConfig({ OTEL_TRACES_EXPORTER: 'otlp', BRIDGE_ROLE: 'worker' }).selfTelemetry.traces,
    true,
    'a worker has no receiver',
  );
});

test("bad OTEL_* values of the bridge's own export stop start-up with a message naming them", () => {
  const on = {
    OTEL_TRACES_EXPORTER: 'otlp',
    OTEL_METRICS_EXPORTER: 'otlp',
    OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
  };
  const bad: Record<string, string> = {
    OTEL_TRACES_EXPORTER: 'zipkin',
    OTEL_METRICS_EXPORTER: 'console',
    OTEL_EXPORTER_OTLP_PROTOCOL: 'udp',
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http',
    OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318',
    OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: 'ftp://collector/v1/metrics',
    OTEL_EXPORTER_OTLP_HEADERS: 'secret-token-value',
    OTEL_TRACES_SAMPLER: 'sometimes',
    OTEL_TRACES_SAMPLER_ARG: '2',
  };
  for (const [name, value] of Object.entries(bad)) {
    const env = {
      ...on,
      ...(name === 'OTEL_TRACES_SAMPLER_ARG' && { OTEL_TRACES_SAMPLER: 'traceidratio' }),
      [name]: value,
    };
    assert.throws(
      () => loadConfig(env),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError, name);
        assert.equal(err.variable, name);
        assert.match(err.message, /expected/);
        assert.ok(!err.message.includes('secret-token-value'), 'headers are not repeated');
        return true;
      },
    );
  }
  assert.doesNotThrow(
    () => loadConfig({ OTEL_TRACES_EXPORTER: 'zipkin', OTEL_LOGS_EXPORTER: 'otlp' }),
    "a Claude Code shell's values are not the bridge's to check",
  );
});

test('BRIDGE_SELF_TRACES_URL and BRIDGE_METRICS_OTLP_URL, deprecated, stand for the OTEL_* settings they name, with a warning', () => {
  const self = loadConfig({
    BRIDGE_SELF_TRACES_URL: 'http://jaeger:4318/v1/traces',
    BRIDGE_METRICS_OTLP_URL: 'http://collector:4318/v1/metrics',
    OTEL_LOGS_EXPORTER: 'otlp',
  }).selfTelemetry;
  assert.deepEqual(
    [self.traces, self.metrics],
    [true, true],
    'set for the bridge alone: a client shell does not set them aside',
  );
  assert.deepEqual(self.env, {
    OTEL_TRACES_EXPORTER: 'otlp',
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://jaeger:4318/v1/traces',
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
    OTEL_METRICS_EXPORTER: 'otlp',
    OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: 'http://collector:4318/v1/metrics',
    OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: 'http/json',
  });
  assert.match(
    self.warnings[0]!,
    /^BRIDGE_SELF_TRACES_URL is deprecated: set OTEL_TRACES_EXPORTER=otlp and OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http:\/\/jaeger:4318\/v1\/traces instead/,
  );
  assert.match(self.warnings[1]!, /^BRIDGE_METRICS_OTLP_URL is deprecated/);
  assert.throws(
    () => loadConfig({ BRIDGE_SELF_TRACES_URL: 'http://jaeger:4318/v1/traces', OTEL_TRACES_EXPORTER: 'otlp' }),
    /BRIDGE_SELF_TRACES_URL="http:\/\/jaeger:4318\/v1\/traces" is not valid: expected unset, since OTEL_TRACES_EXPORTER is set/,
  );
});

test("the metrics' share of the queue's bytes: a sixteenth by default, and below the whole bound", () => {
  assert.equal(loadConfig({}).forwardMetrics, true);
  assert.equal(loadConfig({ BRIDGE_FORWARD_METRICS: 'off' }).forwardMetrics, false);
  assert.equal(loadConfig({}).queueMetricsMaxBytes, 16 * 1024 * 1024);
  assert.equal(loadConfig({ BRIDGE_QUEUE_MAX_BYTES: '32MiB' }).queueMetricsMaxBytes, 2 * 1024 * 1024);
  assert.equal(loadConfig({ BRIDGE_QUEUE_METRICS_MAX_BYTES: '1MiB' }).queueMetricsMaxBytes, 1024 * 1024);
  assert.throws(
    () => loadConfig({ BRIDGE_QUEUE_MAX_BYTES: '8MiB', BRIDGE_QUEUE_METRICS_MAX_BYTES: '8MiB' }),
    /^ConfigError: BRIDGE_QUEUE_METRICS_MAX_BYTES="8MiB" is not valid: expected a size below BRIDGE_QUEUE_MAX_BYTES \(8388608 bytes\)/,
  );
});

test("the lifecycle's timers are read from the settings in one place (lifecycleConfigOf), for the worker and `ccbridge status`", () => {
  const c = loadConfig({
    BRIDGE_INTERACTION_IDLE_MS: '1234',
    BRIDGE_TURN_TIMEOUT_MS: '5678',
    BRIDGE_GAP_WAIT_MS: '910',
    BRIDGE_PROCESS_WAIT_MS: '1112',
  });
  const lifecycle = lifecycleConfigOf(c);
  assert.deepEqual(
    [lifecycle.idleMs, lifecycle.turnTimeoutMs, lifecycle.gapWaitMs, lifecycle.processWaitMs],
    [1234, 5678, 910, 1112],
  );
  assert.deepEqual(DEFAULT_LIFECYCLE, lifecycleConfigOf(loadConfig({})), 'the defaults are the unset settings');
});
