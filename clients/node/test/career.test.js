// Career routes, envelopes, errors and header propagation against the real service.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { MlClient, MlServiceError, isMlServiceError } from '../src/index.js';
import { useService } from './helpers/service.js';

const service = useService();
const client = () => new MlClient({ baseUrl: service.url, apiKey: service.apiKey, timeoutMs: 20_000 });

const STUDENT = {
  academic_scores: { math: 92, physics: 85, computer_science: 95, english: 70 },
  interests: { keywords: ['coding'], riasec: { investigative: 85, artistic: 40 } },
  habits: { weekly_self_study_hours: 20, absence_days: 2, part_time_job: false, extracurricular_activities: true },
};

describe('career', () => {
  test('predict returns top-k recommendations', async () => {
    const data = await client().predictCareers({ ...STUDENT, top_k: 3 });
    assert.equal(data.recommendations.length, 3);
    for (const rec of data.recommendations) {
      assert.equal(typeof rec.career.name, 'string');
      assert.ok(rec.probability >= 0 && rec.probability <= 1);
    }
    assert.equal(typeof data.model_version, 'string');
  });

  test('analyze explains chosen careers', async () => {
    const catalog = await client().listCareers();
    const { name } = catalog.find((career) => career.in_active_model);
    const data = await client().analyzeCareers({ academic_scores: { math: 92, computer_science: 95 }, careers: [name] });
    assert.equal(data.analyses.length, 1);
    assert.equal(data.analyses[0].career.name, name);
    assert.ok(Array.isArray(data.analyses[0].contributions));
  });

  test('catalog, vocabulary and model info', async () => {
    const c = client();
    const [catalog, vocabulary, model] = await Promise.all([c.listCareers(), c.getInterestVocabulary(), c.getCareerModel()]);
    assert.ok(catalog.length > 5);
    assert.ok(catalog.every((career) => typeof career.name === 'string'));
    assert.ok(vocabulary.riasec.includes('investigative'));
    assert.ok(vocabulary.keywords.some((k) => k.keyword === 'coding'));
    assert.equal(typeof model.version, 'string');
  });

  test('withMeta returns the envelope meta and the status', async () => {
    const result = await client().listCareers({ withMeta: true });
    assert.equal(result.status, 200);
    assert.ok(Array.isArray(result.data));
    assert.equal(result.meta.api_version, 'v1');
    assert.equal(result.meta.request_id, result.requestId);
    assert.equal(result.attempts, 1);
  });

  test('a request id is sent and echoed; the incoming one is forwarded', async () => {
    const mine = await client().getInterestVocabulary({ withMeta: true, requestId: 'gw-req-123' });
    assert.equal(mine.meta.request_id, 'gw-req-123');
    const incoming = { headers: { 'x-request-id': 'from-browser-42', traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' } };
    const forwarded = await client().getInterestVocabulary({ withMeta: true, incoming });
    assert.equal(forwarded.meta.request_id, 'from-browser-42');
    const generated = await client().getInterestVocabulary({ withMeta: true });
    assert.match(generated.meta.request_id, /^[0-9a-f]{32}$/);
  });

  test('traceparent is accepted', async () => {
    const data = await client().predictCareers(STUDENT, { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', requestId: 'trace-1' });
    assert.ok(data.recommendations.length > 0);
  });

  test('a 422 carries the field details', async () => {
    await assert.rejects(
      client().predictCareers({ academic_scores: { math: 101 } }, { requestId: 'bad-score-1' }),
      (err) => {
        assert.ok(err instanceof MlServiceError);
        assert.equal(err.status, 422);
        assert.equal(err.code, 'VALIDATION_ERROR');
        assert.equal(err.requestId, 'bad-score-1');
        assert.ok(err.details.some((d) => String(d.field ?? '').includes('math')), JSON.stringify(err.details));
        assert.equal(err.attempts, 1, '4xx is not retried');
        return true;
      },
    );
  });

  test('a wrong or missing API key is UNAUTHORIZED', async (t) => {
    const open = await fetch(`${service.url}/api/v1/career/interests`);
    await open.arrayBuffer();
    if (open.status !== 401) {
      t.skip('the service under test has no API_KEYS configured');
      return;
    }
    for (const apiKey of ['wrong-key', undefined]) {
      const bad = new MlClient({ baseUrl: service.url, apiKey });
      await assert.rejects(bad.listCareers(), (err) => {
        assert.ok(isMlServiceError(err));
        assert.equal(err.code, 'UNAUTHORIZED');
        assert.equal(err.status, 401);
        assert.ok(err.message.length > 0);
        assert.ok(err.requestId);
        return true;
      });
    }
  });

  test('probes', async () => {
    const c = client();
    assert.equal((await c.live()).status, 'alive');
    assert.equal((await c.ready()).ready, true);
    const health = await c.health();
    assert.ok(['ok', 'loading', 'degraded'].includes(health.status));
  });
});
