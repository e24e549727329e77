// Model registry and retraining against the real service (admin key). The service under test
// gets its active model switched by a retrain; the last test activates the original again.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';

import { MlClient, MlServiceError } from '../src/index.js';
import { useService } from './helpers/service.js';

const service = useService();
const admin = () => new MlClient({ baseUrl: service.url, apiKey: service.adminKey, timeoutMs: 30_000 });
const user = () => new MlClient({ baseUrl: service.url, apiKey: service.apiKey, timeoutMs: 30_000 });

/** 45 students of three careers with clearly different scores (the quality gate passes). */
function students() {
  let seed = 7;
  const rand = (lo, hi) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return lo + (seed % (hi - lo + 1));
  };
  const rows = [];
  for (let i = 0; i < 15; i++) {
    rows.push({ math_score: rand(80, 100), physics_score: rand(70, 100), art_score: rand(10, 50), career_aspiration: 'Software Engineer' });
    rows.push({ math_score: rand(20, 60), physics_score: rand(20, 60), art_score: rand(70, 100), career_aspiration: 'Artist' });
    rows.push({ math_score: rand(50, 70), physics_score: rand(80, 100), art_score: rand(30, 60), career_aspiration: 'Doctor' });
  }
  return rows;
}
const MAPPING = { math_score: 'math', physics_score: 'physics', art_score: 'art', career_aspiration: 'label' };
const toCsv = (rows) => [Object.keys(rows[0]).join(','), ...rows.map((r) => Object.values(r).join(','))].join('\n') + '\n';

let original = null;
let adminReady = false;

describe('registry', () => {
  before(() => {
    adminReady = Boolean(service.adminKey);
  });
  after(async () => {
    if (adminReady && original) await admin().activateModelVersion(original).catch(() => {});
  });

  test('list model versions', async () => {
    const versions = await user().listModelVersions();
    assert.ok(versions.length >= 1);
    const active = versions.filter((v) => v.active);
    assert.equal(active.length, 1);
    original = active[0].version;
  });

  test('retrain from a streamed CSV upload, then poll the job', async (t) => {
    if (!adminReady) return t.skip('no admin key (set ML_ADMIN_API_KEY)');
    const csv = Buffer.from(toCsv(students()));
    const chunks = Readable.from([csv.subarray(0, 100), csv.subarray(100)]);
    const job = await admin().retrainFromCsv({ file: { data: chunks, filename: 'students.csv' }, mapping: MAPPING }, { requestId: 'retrain-csv-1' });
    assert.ok(['queued', 'running'].includes(job.state));
    assert.equal(job.source, 'csv');
    assert.equal(job.rows.rows_received, 45);
    const status = await admin().getRetrainJob(job.id);
    assert.equal(status.id, job.id);
    const done = await admin().waitForRetrainJob(job.id, { intervalMs: 200, timeoutMs: 60_000 });
    assert.ok(['succeeded', 'rejected', 'failed'].includes(done.state), done.state);
    assert.equal(done.state, 'succeeded', JSON.stringify({ reasons: done.reasons, error: done.error }));
  });

  test('retrain from JSON records', async (t) => {
    if (!adminReady) return t.skip('no admin key (set ML_ADMIN_API_KEY)');
    const job = await admin().retrainFromRecords({ records: students(), mapping: MAPPING });
    assert.equal(job.source, 'json');
    const done = await admin().waitForRetrainJob(job.id, { intervalMs: 200, timeoutMs: 60_000 });
    assert.ok(['succeeded', 'rejected', 'failed'].includes(done.state));
  });

  test('activate the original version again (rollback)', async (t) => {
    if (!adminReady) return t.skip('no admin key (set ML_ADMIN_API_KEY)');
    const activation = await admin().activateModelVersion(original);
    assert.deepEqual({ version: activation.version, active: activation.active }, { version: original, active: true });
    const model = await user().getCareerModel();
    assert.equal(model.version, original);
  });

  test('admin routes: 404 for unknown ids, 401 for a non-admin key', async (t) => {
    if (!adminReady) return t.skip('no admin key (set ML_ADMIN_API_KEY)');
    await assert.rejects(admin().getRetrainJob('no-such-job'), (err) => err instanceof MlServiceError && err.status === 404 && err.code === 'NOT_FOUND');
    await assert.rejects(admin().activateModelVersion('no-such-version'), (err) => err instanceof MlServiceError && err.status === 404);
    await assert.rejects(user().retrainFromRecords({ records: students() }), (err) => err instanceof MlServiceError && err.code === 'UNAUTHORIZED' && err.attempts === 1);
  });
});
