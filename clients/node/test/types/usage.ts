// Compiled by `npm run typecheck` (and test/types.test.js): the public types must accept the
// calls the README shows and give the generated response types back.
import { Readable } from 'node:stream';

import {
  MlClient,
  MlServiceError,
  createClient,
  isMlServiceError,
  type CompareResult,
  type Monitoring,
  type OutcomeIngest,
  type OutcomeRecord,
  type PredictRequest,
  type PredictResponse,
  type RetrainJob,
  type Schemas,
  type WithMeta,
} from '@skill-compass/ml-client';

const client = new MlClient({ baseUrl: 'http://localhost:8000', apiKey: 'k', timeoutMs: 5000, retries: 2, headers: { 'x-gateway': '1' } });
const other = createClient({ baseUrl: 'http://localhost:8000' });

async function usage(incoming: { headers: Record<string, string | string[] | undefined> }): Promise<void> {
  const body: PredictRequest = { academic_scores: { math: 90 }, top_k: 3 };
  const predicted: PredictResponse = await client.predictCareers(body, { incoming, timeoutMs: 1000 });
  const first: Schemas['Recommendation'] | undefined = predicted.recommendations[0];
  const top: string | undefined = first?.career.name;
  void top;

  const withMeta: WithMeta<PredictResponse> = await client.predictCareers(body, { withMeta: true });
  const id: string = withMeta.meta.request_id;
  void id;

  const compared: CompareResult = await client.compareImages({
    imageA: Buffer.from([1, 2]),
    imageB: Readable.from([Buffer.from([3])]),
    tags: ['a red circle'],
  });
  const verdict: 'similar' | 'related' | 'different' = compared.verdict;
  void verdict;
  await client.compareImagesBase64({ imageA: 'aGk=', imageB: new Blob([new Uint8Array([1])]) });
  await client.matchImage({ image: { data: new Uint8Array(2), filename: 'x.png', contentType: 'image/png' }, tags: 'a,b' });
  const vectors = await client.embedImages({ images: [new ArrayBuffer(4), new Blob([])] });
  const dims: number = vectors.model.dimension;
  void dims;
  await client.embedTexts({ texts: ['a red circle'] });

  const job: RetrainJob = await client.retrainFromCsv({ file: 'a,b\n1,2\n', mapping: { a: 'math', b: 'label' } });
  await client.retrainFromRecords({ records: [{ math: 90, career: 'Doctor' }], mapping: { career: 'label' } });
  const done = await client.waitForRetrainJob(job.id, { intervalMs: 100 });
  const state: 'queued' | 'running' | 'succeeded' | 'rejected' | 'failed' = done.state;
  void state;
  await client.activateModelVersion('v1', { signal: AbortSignal.timeout(100) });
  await other.listCareers();
  await other.getInterestVocabulary();
  await other.getCareerModel();
  await other.listModelVersions();
  await other.analyzeCareers({ academic_scores: { math: 1 }, careers: ['Doctor'] });
  await other.waitUntilReady({ timeoutMs: 10 });

  const record: OutcomeRecord = {
    student: { academic_scores: { math: 90 } },
    career: 'software_engineer',
    observed_at: '2026-11-30T09:15:00Z',
    idempotency_key: 'k-1',
  };
  const ingest: OutcomeIngest = await client.reportOutcomes({ outcomes: [record] });
  const stored: number = ingest.stored + ingest.duplicates;
  void stored;
  const stats = await client.getOutcomeStats();
  const fresh: number = stats.new_since_active;
  void fresh;
  const monitoring: Monitoring = await client.getMonitoring();
  const psi: number | null | undefined = monitoring.drift.max_psi;
  void psi;
  const erased = await client.eraseOutcomes('gw-1');
  const deleted: number = erased.deleted;
  void deleted;
  const jobs = await client.listRetrainJobs();
  const trigger: 'upload' | 'store' | 'auto' | undefined = jobs[0]?.trigger;
  void trigger;
  await client.retrainFromStore({ window_days: 30, include_base_rows: false });

  try {
    await client.listCareers();
  } catch (err) {
    if (isMlServiceError(err)) {
      const code: string = err.code;
      const status: number | null = err.status;
      void code;
      void status;
    }
    if (err instanceof MlServiceError && err.retryable) throw err;
  }
}

void usage;
