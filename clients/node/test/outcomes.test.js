// The closed loop against the real service: outcomes in (with idempotency and per-row 422s),
// stats, monitoring, erasure and the job list (admin key).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { MlClient, MlServiceError } from '../src/index.js';
import { useService } from './helpers/service.js';

const service = useService();
const client = () => new MlClient({ baseUrl: service.url, apiKey: service.apiKey, timeoutMs: 20_000 });
const admin = () => new MlClient({ baseUrl: service.url, apiKey: service.adminKey, timeoutMs: 20_000 });

const run = `node-${Date.now()}`;
const observedAt = new Date(Date.now() - 3_600_000).toISOString();
const outcome = (i, extra = {}) => ({
  student: { academic_scores: { math: 90 - i, physics: 80, computer_science: 88 }, interests: { keywords: ['coding'] } },
  career: i % 2 ? 'Software Engineer' : 'data_scientist',
  observed_at: observedAt,
  subject_id: `${run}-subject`,
  idempotency_key: `${run}-${i}`,
  ...extra,
});

describe('outcomes', () => {
  test('a batch is stored once, however often it is sent', async () => {
    const batch = { outcomes: [0, 1, 2].map((i) => outcome(i)) };
    const first = await client().reportOutcomes(batch);
    assert.equal(first.stored, 3);
    assert.equal(first.duplicates, 0);
    assert.equal(typeof first.model_version, 'string');
    const again = await client().reportOutcomes(batch);
    assert.deepEqual({ stored: again.stored, duplicates: again.duplicates }, { stored: 0, duplicates: 3 });
    const stats = await client().getOutcomeStats();
    assert.ok(stats.total >= 3);
    assert.ok(stats.by_career['Software Engineer'] >= 1 && stats.by_career['Data Scientist'] >= 2);
    assert.ok(stats.new_since_active >= 3);
  });

  test('one 422 names every bad row, and nothing is stored', async () => {
    const before = (await client().getOutcomeStats()).total;
    const err = await client()
      .reportOutcomes({ outcomes: [outcome(10, { career: 'Astronaut' }), outcome(11), outcome(12, { observed_at: '2099-01-01T00:00:00Z' })] })
      .catch((e) => e);
    assert.ok(err instanceof MlServiceError);
    assert.equal(err.status, 422);
    assert.equal(err.code, 'VALIDATION_ERROR');
    assert.deepEqual(err.details.map((d) => d.row), [0, 2]);
    assert.deepEqual(err.details.map((d) => d.type), ['unknown_career', 'future_timestamp']);
    assert.equal((await client().getOutcomeStats()).total, before);
  });

  test('monitoring reports the window and live quality', async () => {
    await client().predictCareers({ academic_scores: { math: 90 } });
    const data = await client().getMonitoring();
    assert.equal(data.enabled, true);
    assert.ok(data.window.requests >= 1);
    assert.equal(typeof data.drift.features, 'object');
    assert.ok('max_psi' in data.drift && 'predictions_psi' in data.drift);
    assert.ok(data.live_quality.outcomes >= 3);
  });

  test('erasure needs an admin key and deletes the subject', async () => {
    const err = await client().eraseOutcomes(`${run}-subject`).catch((e) => e);
    assert.equal(err.status, 401);
    const erased = await admin().eraseOutcomes(`${run}-subject`);
    assert.equal(erased.deleted, 3);
    assert.deepEqual(await admin().eraseOutcomes(`${run}-subject`), { deleted: 0 });
    assert.throws(() => admin().eraseOutcomes(''), TypeError);
  });

  test('jobs are listed for admins, with their trigger', async () => {
    const jobs = await admin().listRetrainJobs();
    assert.ok(Array.isArray(jobs));
    for (const job of jobs) assert.ok(['upload', 'store', 'auto'].includes(job.trigger));
  });
});
