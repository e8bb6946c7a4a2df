/**
 * The tests read what LLMFlow stored from its SQLite file while it is still writing. LLMFlow
 * 0.4.1 sets no busy timeout, so a reader's lock used to make its inserts fail ("database is
 * locked"): metric points refused, and lost, because a test looked. The test support reads
 * without locks (test/support/llmflow-db.ts); this checks that LLMFlow refuses nothing while
 * reads run beside its writes, and that every read is consistent (never fewer rows than before).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { payloads } from '../support/fixtures';
import { post, startLlmflow, type LlmflowPeer } from '../support/peers';
import { decodeExportRequest } from '@ccbridge/otlp';
import { pointsIn } from '@ccbridge/metrics';

let llmflow: LlmflowPeer;
before(async () => {
  llmflow = await startLlmflow();
});
after(async () => {
  await llmflow?.stop();
});

test('reading LLMFlow’s SQLite file while it stores metrics makes it refuse none, and each read is whole', async () => {
  const p = payloads('json', 'two-tools').find((x) => x.signal === 'metrics')!;
  const request = decodeExportRequest('metrics', p.body, p.format);
  const perRequest = pointsIn(request);
  const REQUESTS = 150;
  let writing = true;
  // What each reader saw, in order: rows are only ever added, so a torn read would show as a drop.
  const seen: number[][] = [[], [], []];
  const readers = seen.map(async (counts) => {
    while (writing) counts.push((await llmflow.metricRows()).length);
  });
  const refusals: string[] = [];
  try {
    for (let i = 0; i < REQUESTS; i++) {
      const r = await post(`${llmflow.url}/v1/metrics`, Buffer.from(JSON.stringify(request)), 'application/json');
      assert.equal(r.status, 200);
      const answer = JSON.parse(r.body.toString()) as { partialSuccess?: { errorMessage?: string } };
      if (answer.partialSuccess) refusals.push(answer.partialSuccess.errorMessage ?? '?');
    }
  } finally {
    writing = false;
    await Promise.all(readers);
  }
  assert.deepEqual(refusals, [], 'LLMFlow refused no point while the tests read its file');
  const reads = seen.flat().length;
  assert.ok(reads >= 10, `reads ran beside the writes (${reads})`);
  for (const counts of seen)
    assert.deepEqual(
      counts,
      [...counts].sort((a, b) => a - b),
      'no read saw fewer rows than an earlier one',
    );
  assert.equal((await llmflow.metricRows()).length, REQUESTS * perRequest, 'every point stored');
});
