import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, SPEC, loadConfig, unknownVariables } from '@ccbridge/config';

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
  BRIDGE_METRICS_PORT: '0',
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
  BRIDGE_INTERACTION_IDLE_MS: '1.5',
  BRIDGE_TURN_TIMEOUT_MS: '1h',
  BRIDGE_GAP_WAIT_MS: '99',
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
    assert.throws(() => loadConfig({ [name]: value }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.variable, name);
      assert.match(err.message, new RegExp(`^${name}=`));
      assert.match(err.message, /expected/);
      return true;
    });
  });
}

test('REDIS_CLUSTER needs REDIS_URL, a node of the cluster', () => {
  assert.throws(() => loadConfig({ REDIS_CLUSTER: 'true' }), /REDIS_CLUSTER="true" is not valid: expected REDIS_URL/);
  assert.equal(loadConfig({ REDIS_CLUSTER: 'yes', REDIS_URL: 'redis://10.0.0.1:7000' }).redisCluster, true);
});

test('BRIDGE_* variables that no setting reads are reported (a misspelling is not silently ignored)', () => {
  assert.deepEqual(unknownVariables({ BRIDGE_INTERACTION_IDLE: '5', BRIDGE_ROLE: 'all', PATH: '/bin' }), ['BRIDGE_INTERACTION_IDLE']);
});

test('the bridge\'s own traces may not go to its own receiver (a loop), nor metrics share the OTLP port', () => {
  for (const url of ['http://127.0.0.1:4318/v1/traces', 'http://localhost:4318/v1/traces', 'http://0.0.0.0:4318']) {
    assert.throws(() => loadConfig({ BRIDGE_SELF_TRACES_URL: url }), (err: ConfigError) => err.variable === 'BRIDGE_SELF_TRACES_URL' && /loop/.test(err.message), url);
  }
  assert.equal(loadConfig({ BRIDGE_SELF_TRACES_URL: 'http://127.0.0.1:4318/v1/traces', OTLP_HTTP_PORT: '14318' }).selfTracesUrl, 'http://127.0.0.1:4318/v1/traces');
  assert.equal(loadConfig({ BRIDGE_SELF_TRACES_URL: 'http://jaeger:4318/v1/traces' }).selfTracesUrl, 'http://jaeger:4318/v1/traces');
  assert.equal(loadConfig({ BRIDGE_SELF_TRACES_URL: 'http://127.0.0.1:4318/v1/traces', BRIDGE_ROLE: 'worker' }).selfTracesUrl, 'http://127.0.0.1:4318/v1/traces', 'a worker has no receiver');
  assert.throws(() => loadConfig({ BRIDGE_METRICS_PORT: '4318' }), /BRIDGE_METRICS_PORT="4318" is not valid: expected a port other than OTLP_HTTP_PORT/);
  assert.equal(loadConfig({}).metricsPort, 9464);
});

test('bearer tokens: a comma-separated list; TLS: a certificate and a key, both or neither', () => {
  assert.deepEqual(loadConfig({ BRIDGE_AUTH_TOKENS: ' first-token-0123456789 , second-token-abcdefghij ' }).authTokens, ['first-token-0123456789', 'second-token-abcdefghij']);
  assert.deepEqual(loadConfig({}).authTokens, []);
  assert.throws(() => loadConfig({ BRIDGE_AUTH_TOKENS: 'first-token-0123456789,short' }), (err: Error) => /BRIDGE_AUTH_TOKENS/.test(err.message) && !err.message.includes('first-token'), 'the message names the variable, never a token');
  const file = __filename;
  assert.throws(() => loadConfig({ BRIDGE_TLS_CERT_FILE: file }), /BRIDGE_TLS_KEY_FILE="" is not valid: expected a file as well, since BRIDGE_TLS_CERT_FILE is set/);
  assert.throws(() => loadConfig({ BRIDGE_TLS_KEY_FILE: file }), /BRIDGE_TLS_CERT_FILE="" is not valid/);
  assert.equal(loadConfig({ BRIDGE_TLS_CERT_FILE: file, BRIDGE_TLS_KEY_FILE: file }).tlsKeyFile, file);
});
