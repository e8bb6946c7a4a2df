import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DecodeError,
  attributesToRecord,
  countItems,
  decodeExportRequest,
  encodeExportRequest,
  encodeExportResponse,
  encodeStatus,
  root,
} from '@ccbridge/otlp';
import { SCENARIOS, eventCounts, logsOf, nativeTraceOf, payloads } from '../support/fixtures';

test('protobuf and JSON captures of the same scenario decode to the same shape', () => {
  for (const scenario of SCENARIOS) {
    const fromPb = logsOf('protobuf', scenario);
    const fromJson = logsOf('json', scenario);
    assert.deepEqual([...eventCounts(fromPb)], [...eventCounts(fromJson)], scenario);
    const keys = (r: typeof fromPb) =>
      r.resourceLogs![0]!.scopeLogs![0]!.logRecords!.map((l) => l.attributes!.map((a) => a.key).join(','));
    assert.deepEqual(keys(fromPb), keys(fromJson), scenario);
  }
});

test('64-bit integers become decimal strings and values keep their types', () => {
  const logs = logsOf('protobuf', 'tool');
  const records = logs.resourceLogs![0]!.scopeLogs![0]!.logRecords!;
  const api = records.find((r) => r.body?.stringValue === 'claude_code.api_request')!;
  assert.match(api.timeUnixNano!, /^\d{19}$/);
  const a = attributesToRecord(api.attributes);
  assert.equal(typeof a['input_tokens'], 'number');
  assert.equal(typeof a['cost_usd'], 'number');
  assert.equal(a['anthropic.custom_base_url'], true);
});

test('trace and span ids are hex in the canonical form, from protobuf bytes and from OTLP/JSON', () => {
  const native = nativeTraceOf('tool');
  const span = native.resourceSpans![0]!.scopeSpans![0]!.spans![0]!;
  assert.match(span.traceId, /^[0-9a-f]{32}$/);
  assert.match(span.spanId, /^[0-9a-f]{16}$/);
  const again = decodeExportRequest('traces', encodeExportRequest('traces', native, 'protobuf'), 'protobuf');
  assert.deepEqual(again, native);
});

test('every protobuf capture decodes, and re-encodes to what it decoded from', () => {
  for (const scenario of SCENARIOS) {
    for (const p of payloads('protobuf', scenario)) {
      const decoded = decodeExportRequest(p.signal, p.body, 'protobuf');
      const reencoded = encodeExportRequest(p.signal, decoded, 'protobuf');
      // The sender writes some zero values out; proto3 encoders (ours) leave them out.
      assert.ok(reencoded.length <= p.body.length && reencoded.length > p.body.length * 0.95, p.file);
      assert.deepEqual(decodeExportRequest(p.signal, reencoded, 'protobuf'), decoded, p.file);
      assert.ok(countItems(p.signal, decoded) > 0);
    }
  }
});

test('a body that does not decode is a DecodeError saying why', () => {
  assert.throws(
    () => decodeExportRequest('logs', Buffer.from('{"resourceLogs": 5}'), 'json'),
    (e: Error) => e instanceof DecodeError && /array expected/.test(e.message),
  );
  assert.throws(
    () => decodeExportRequest('logs', Buffer.from('{not json'), 'json'),
    (e: Error) => e instanceof DecodeError && /not valid JSON/.test(e.message),
  );
  assert.throws(() => decodeExportRequest('logs', Buffer.from('[1,2]'), 'json'), DecodeError);
  assert.throws(
    () => decodeExportRequest('logs', Buffer.from([0x0a, 0xff, 0xff, 0xff]), 'protobuf'),
    (e: Error) => e instanceof DecodeError && /protobuf/.test(e.message),
  );
  const base64Ids = {
    resourceSpans: [
      { scopeSpans: [{ spans: [{ traceId: 'AAECAwQFBgcICQoLDA0ODw==', spanId: '0001020304050607', name: 'x' }] }] },
    ],
  };
  assert.throws(
    () => decodeExportRequest('traces', Buffer.from(JSON.stringify(base64Ids)), 'json'),
    (e: Error) => /hex/.test(e.message),
  );
});

test('OTLP/JSON accepts enum names and integers given as numbers or strings', () => {
  const body = {
    resourceSpans: [
      {
        scopeSpans: [
          {
            spans: [
              {
                traceId: '0102030405060708090a0b0c0d0e0f10',
                spanId: '0102030405060708',
                name: 's',
                kind: 'SPAN_KIND_CLIENT',
                startTimeUnixNano: 1700000000000000000,
                endTimeUnixNano: '1700000000000000001',
                attributes: [{ key: 'n', value: { intValue: 7 } }],
              },
            ],
          },
        ],
      },
    ],
  };
  const span = decodeExportRequest('traces', Buffer.from(JSON.stringify(body)), 'json').resourceSpans![0]!
    .scopeSpans![0]!.spans![0]!;
  assert.equal(span.kind, 3);
  assert.equal(span.endTimeUnixNano, '1700000000000000001');
  assert.deepEqual(span.attributes, [{ key: 'n', value: { intValue: '7' } }]);
});

test('responses: an empty Export*ServiceResponse, partial success, and google.rpc.Status', () => {
  assert.equal(encodeExportResponse('logs', 'protobuf').length, 0);
  assert.equal(Buffer.from(encodeExportResponse('metrics', 'json')).toString(), '{}');
  const partial = encodeExportResponse('traces', 'protobuf', { rejected: 2, errorMessage: 'bad spans' });
  const type = root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse');
  assert.deepEqual(type.toObject(type.decode(partial), { longs: Number }), {
    partialSuccess: { rejectedSpans: 2, errorMessage: 'bad spans' },
  });
  const status = root.lookupType('google.rpc.Status');
  assert.deepEqual(status.toObject(status.decode(encodeStatus('protobuf', 400, 'nope'))), { code: 3, message: 'nope' });
  assert.deepEqual(JSON.parse(Buffer.from(encodeStatus('json', 503, 'later')).toString()), {
    code: 14,
    message: 'later',
  });
});

test('a oneof set twice on the wire keeps the last member only, as protobuf merges it', () => {
  // codec.ts replaces protobufjs's oneof setter with one that deletes only present members.
  const logsRequest = (body: object) => ({
    resourceLogs: [{ scopeLogs: [{ logRecords: [{ timeUnixNano: '1', body }] }] }],
  });
  const bytes = (body: object) => encodeExportRequest('logs', logsRequest(body), 'protobuf');
  // Two AnyValue messages in a row parse as one: both members arrive, the later must win.
  const AnyValue = root.lookupType('opentelemetry.proto.common.v1.AnyValue');
  const twice = (first: object, second: object) =>
    AnyValue.toObject(
      AnyValue.decode(Buffer.concat([AnyValue.encode(first).finish(), AnyValue.encode(second).finish()])),
      { longs: String },
    );
  assert.deepEqual(twice({ stringValue: 'a' }, { intValue: 5 }), { intValue: '5' });
  assert.deepEqual(twice({ intValue: 5 }, { stringValue: 'a' }), { stringValue: 'a' });
  assert.deepEqual(twice({ boolValue: true }, { doubleValue: 1.5 }), { doubleValue: 1.5 });
  // And a whole request still decodes each member as it came.
  for (const body of [{ stringValue: 'x' }, { intValue: '7' }, { boolValue: true }, { doubleValue: 2.5 }]) {
    const decoded = decodeExportRequest('logs', bytes(body), 'protobuf');
    assert.deepEqual(decoded.resourceLogs![0]!.scopeLogs![0]!.logRecords![0]!.body, body);
  }
});
