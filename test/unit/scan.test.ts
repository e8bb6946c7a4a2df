/**
 * The receiver's check of protobuf bodies (packages/otlp/src/scan.ts) against the decoder the
 * worker uses: on real captures they count the same, and over many corrupted bodies, whatever
 * the scan takes the decoder decodes, with the same count (the scan may be stricter, never laxer).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DecodeError,
  countItems,
  decodeExportRequest,
  encodeExportRequest,
  scanExportRequest,
  type Signal,
} from '@ccbridge/otlp';
import { SCENARIOS, payloads } from '../support/fixtures';
import { prng } from '../support/assembly';
import { readBatch } from '@ccbridge/ingest';

const bodies: { signal: Signal; body: Uint8Array }[] = SCENARIOS.flatMap((s) =>
  payloads('protobuf', s).map((p) => ({ signal: p.signal, body: p.body })),
);
bodies.push({
  signal: 'traces',
  body: encodeExportRequest(
    'traces',
    {
      resourceSpans: [
        {
          scopeSpans: [
            {
              spans: [
                {
                  traceId: '0'.repeat(31) + '1',
                  spanId: '0'.repeat(15) + '1',
                  name: 'x',
                  startTimeUnixNano: '1',
                  endTimeUnixNano: '2',
                },
              ],
            },
          ],
        },
      ],
    },
    'protobuf',
  ),
});

test('the scan counts what the decoder counts, on every capture (logs, metrics, traces)', () => {
  assert.deepEqual([...new Set(bodies.map((b) => b.signal))].sort(), ['logs', 'metrics', 'traces']);
  for (const { signal, body } of bodies) {
    const items = scanExportRequest(signal, body);
    assert.ok(items > 0, signal);
    assert.equal(items, countItems(signal, decodeExportRequest(signal, body, 'protobuf')), signal);
  }
});

test('over 30,000 corrupted bodies, what the scan takes always decodes, with the same count', () => {
  const random = prng(7);
  let taken = 0;
  let refused = 0;
  for (let n = 0; n < 30_000; n++) {
    const { signal, body } = bodies[n % bodies.length]!;
    const b = Buffer.from(body);
    const kind = Math.floor(random() * 4);
    const at = Math.floor(random() * b.length);
    let mutated: Buffer;
    if (kind === 0) {
      mutated = b;
      for (let k = 0; k < 1 + Math.floor(random() * 3); k++)
        mutated[Math.floor(random() * b.length)] = Math.floor(random() * 256);
    } else if (kind === 1) mutated = b.subarray(0, at);
    else if (kind === 2)
      mutated = Buffer.concat([b.subarray(0, at), Buffer.from([Math.floor(random() * 256)]), b.subarray(at)]);
    else mutated = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + Math.floor(random() * 8))]);
    let items: number;
    try {
      items = scanExportRequest(signal, mutated);
    } catch (err) {
      assert.ok(err instanceof DecodeError, (err as Error).message);
      refused += 1;
      continue;
    }
    taken += 1;
    const decoded = decodeExportRequest(signal, mutated, 'protobuf');
    assert.equal(items, countItems(signal, decoded));
  }
  assert.ok(taken > 1_000 && refused > 1_000, `both happen: ${taken} taken, ${refused} refused`);
});

test('a known field number in another wire type is skipped as unknown, as the decoder does (resource_logs as a varint)', () => {
  const body = Buffer.concat([Buffer.from([0x08, 0x01]), Buffer.from(bodies.find((b) => b.signal === 'logs')!.body)]);
  const items = scanExportRequest('logs', body);
  assert.ok(items > 0);
  assert.equal(items, countItems('logs', decodeExportRequest('logs', body, 'protobuf')));
});

test('strings must be UTF-8, as the Collector asks of proto3 strings: every length and offset, short and long', () => {
  // A log body whose one string is `text` (bytes as given), so the check sees exactly those bytes.
  const withBody = (text: Buffer) => {
    const marker = 'M'.repeat(text.length);
    const body = Buffer.from(
      encodeExportRequest(
        'logs',
        { resourceLogs: [{ scopeLogs: [{ logRecords: [{ body: { stringValue: marker } }] }] }] },
        'protobuf',
      ),
    );
    const at = body.indexOf(marker);
    text.copy(body, at);
    return body;
  };
  const bad = [Buffer.from([0xff]), Buffer.from([0x80]), Buffer.from([0xe2, 0x82]), Buffer.from([0xc0, 0xaf])];
  for (const length of [1, 3, 4, 5, 8, 31, 255, 256, 257, 300]) {
    const ascii = Buffer.alloc(length, 'a');
    assert.equal(scanExportRequest('logs', withBody(ascii)), 1, `ASCII, ${length} bytes`);
    const accented = Buffer.from('é🙂'.repeat(length).slice(0, length));
    assert.equal(scanExportRequest('logs', withBody(accented)), 1, `UTF-8, ${accented.length} bytes`);
    for (const seq of bad) {
      for (const offset of new Set([0, Math.floor(length / 2), length - 1])) {
        const text = Buffer.alloc(length + seq.length, 'a');
        seq.copy(text, offset);
        assert.throws(
          () => scanExportRequest('logs', withBody(text)),
          DecodeError,
          `${seq.toString('hex')} at ${offset} of ${text.length}`,
        );
      }
    }
  }
});

test("limits: attributes per message (a kvlist's entries too) and bytes per value, at the limit taken, past it refused with the reason", () => {
  const attrs = (n: number) => Array.from({ length: n }, (_, i) => ({ key: `k${i}`, value: { stringValue: 'v' } }));
  const body = (record: object) =>
    encodeExportRequest('logs', { resourceLogs: [{ scopeLogs: [{ logRecords: [record] }] }] }, 'protobuf');
  const limits = (maxAttributes: number, maxValueBytes = 1_000_000) => ({ maxAttributes, maxValueBytes });
  const five = body({ attributes: attrs(5) });
  assert.equal(scanExportRequest('logs', five, limits(5)), 1);
  assert.throws(
    () => scanExportRequest('logs', five, limits(4)),
    /more than 4 attributes \(the bridge's BRIDGE_MAX_ATTRIBUTES\)/,
  );
  const kvlist = body({ attributes: [{ key: 'nested', value: { kvlistValue: { values: attrs(6) } } }] });
  assert.equal(scanExportRequest('logs', kvlist, limits(6)), 1);
  assert.throws(() => scanExportRequest('logs', kvlist, limits(5)), /more than 5 attributes/);
  const long = body({ body: { stringValue: 'x'.repeat(100) } });
  assert.equal(scanExportRequest('logs', long, limits(10, 100)), 1);
  assert.throws(
    () => scanExportRequest('logs', long, limits(10, 99)),
    /a value of 100 bytes is larger than 99 \(the bridge's BRIDGE_MAX_VALUE_BYTES\)/,
  );
  // OTLP/JSON is held to the same limits, through its encoding.
  const json = Buffer.from(
    JSON.stringify({ resourceLogs: [{ scopeLogs: [{ logRecords: [{ attributes: attrs(5) }] }] }] }),
  );
  assert.equal(readBatch('logs', json, 'json', limits(5)).items, 1);
  assert.throws(() => readBatch('logs', json, 'json', limits(4)), DecodeError);
});
