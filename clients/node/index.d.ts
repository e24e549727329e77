/**
 * Public API of @skill-compass/ml-client. Request and response types come from
 * ./types/openapi.d.ts, generated from the service's OpenAPI document (`npm run generate`),
 * and are looked up by route (path + method), so they follow the service's contract.
 */
import type { components, operations, paths } from './types/openapi.js';

export type { components, operations, paths };

/** Every schema of the service, e.g. `Schemas['Recommendation']`. */
export type Schemas = components['schemas'];

type Method = 'get' | 'post' | 'delete';
type Op<P extends keyof paths, M extends Method> = NonNullable<paths[P][M]>;

/** The JSON request body of a route. */
export type JsonBody<P extends keyof paths, M extends Method = 'post'> =
  Op<P, M> extends { requestBody?: { content: { 'application/json': infer B } } } ? B : never;

/** The multipart request body of a route, as the service documents it. */
export type MultipartBody<P extends keyof paths, M extends Method = 'post'> =
  Op<P, M> extends { requestBody?: { content: { 'multipart/form-data': infer B } } } ? B : never;

type EnvelopeData<E> = E extends { data?: infer D } ? NonNullable<D> : never;

/** `data` of a route's success envelope (200 or 202). */
export type ResponseData<P extends keyof paths, M extends Method = 'post'> =
  Op<P, M> extends { responses: { 200: { content: { 'application/json': infer E } } } }
    ? EnvelopeData<E>
    : Op<P, M> extends { responses: { 202: { content: { 'application/json': infer E } } } }
      ? EnvelopeData<E>
      : never;

// ---- request and response types, by route --------------------------------------------------

export type PredictRequest = JsonBody<'/api/v1/career/predict'>;
export type PredictResponse = ResponseData<'/api/v1/career/predict'>;
export type AnalyzeRequest = JsonBody<'/api/v1/career/analyze'>;
export type AnalyzeResponse = ResponseData<'/api/v1/career/analyze'>;
export type CareerCatalog = ResponseData<'/api/v1/career/careers', 'get'>;
export type InterestVocabulary = ResponseData<'/api/v1/career/interests', 'get'>;
export type CareerModelInfo = ResponseData<'/api/v1/career/model', 'get'>;
export type ModelVersions = ResponseData<'/api/v1/career/models', 'get'>;
export type Activation = ResponseData<'/api/v1/career/models/{version}/activate'>;
export type RetrainRecordsRequest = JsonBody<'/api/v1/career/retrain'>;
export type RetrainJob = ResponseData<'/api/v1/career/retrain/{job_id}', 'get'>;
export type RetrainJobs = ResponseData<'/api/v1/career/retrain', 'get'>;
export type StoreRetrainRequest = JsonBody<'/api/v1/career/retrain/store'>;
export type OutcomeBatch = JsonBody<'/api/v1/career/outcomes'>;
export type OutcomeRecord = OutcomeBatch['outcomes'][number];
export type OutcomeIngest = ResponseData<'/api/v1/career/outcomes'>;
export type OutcomeStats = ResponseData<'/api/v1/career/outcomes/stats', 'get'>;
export type Erasure = ResponseData<'/api/v1/career/outcomes', 'delete'>;
export type Monitoring = ResponseData<'/api/v1/career/monitoring', 'get'>;
export type CompareResult = ResponseData<'/api/v1/clip/compare'>;
export type MatchResult = ResponseData<'/api/v1/clip/match'>;
export type EmbeddingResult = ResponseData<'/api/v1/clip/embed/image'>;
export type EmbedTextsRequest = JsonBody<'/api/v1/clip/embed/text'>;
export type Health = ResponseData<'/health', 'get'>;
export type Liveness = ResponseData<'/health/live', 'get'>;
export type Readiness = ResponseData<'/health/ready', 'get'>;
export type Meta = Schemas['Meta'];
export type ErrorBody = Schemas['ErrorBody'];

// ---- inputs ---------------------------------------------------------------------------------

/** Bytes held in memory: sent with a Content-Length, and retried when the service asks. */
export type BinaryData = Uint8Array | ArrayBuffer | ArrayBufferView | Blob;
/**
 * A stream (Node Readable, web ReadableStream, any async iterable of Uint8Array/string):
 * streamed to the service as it is read, never buffered; such a call is sent once, not retried.
 */
export type StreamData = ReadableStream<Uint8Array> | AsyncIterable<unknown>;
export interface FileDescriptor {
  data: BinaryData | StreamData;
  /** Defaults: a File's name, else the field name (image_a, image, image-0, data.csv). */
  filename?: string;
  /** Defaults: a Blob's type, else application/octet-stream (text/csv for retrain). */
  contentType?: string;
}
export type UploadSource = BinaryData | StreamData | FileDescriptor;
/** For the base64 JSON routes: a string (plain base64 or data URI) is sent as is; bytes are encoded. */
export type Base64Source = string | UploadSource;
/** Tags: an array (one form field each) or one string (the service also splits commas). */
export type Tags = string | readonly string[];

export type HeaderSource = Headers | Record<string, string | readonly string[] | undefined>;

export interface MlClientOptions {
  /** Service root, e.g. `http://ml:8000` (a trailing `/api/v1` is accepted). */
  baseUrl: string;
  /** Sent as `X-API-Key`. */
  apiKey?: string;
  /** Deadline of one call, retries and their waits included; 0 for none. Default 30000. */
  timeoutMs?: number;
  /** Extra attempts after the first. Default 2. */
  retries?: number;
  /** First backoff in ms; doubles per retry, half of it random (jitter). Default 200. */
  backoffBaseMs?: number;
  /** Cap of one backoff. Default 5000. */
  backoffMaxMs?: number;
  /** A Retry-After longer than this is not waited for: the error is thrown. Default 30000. */
  maxRetryAfterMs?: number;
  /** Headers sent with every request (X-API-Key, X-Request-ID and trace headers are set by the client). */
  headers?: HeaderSource;
  /** A fetch implementation; defaults to the global fetch. */
  fetch?: typeof fetch;
}

export interface CallOptions {
  /** X-Request-ID to send; else the incoming request's, else a generated one (same on every retry). */
  requestId?: string;
  /** W3C traceparent to send; else the incoming request's. */
  traceparent?: string;
  /** W3C tracestate to send; else the incoming request's when its traceparent is forwarded. */
  tracestate?: string;
  /**
   * The gateway's incoming request (anything with `headers`) or its headers: X-Request-ID,
   * traceparent and tracestate are forwarded from it.
   */
  incoming?: { headers: HeaderSource } | HeaderSource;
  /** Aborts the call (the error is MlServiceError code ABORTED). */
  signal?: AbortSignal;
  /** This call's deadline, overriding the client's. */
  timeoutMs?: number;
  /** This call's extra attempts, overriding the client's. */
  retries?: number;
  /** Extra headers for this call. */
  headers?: HeaderSource;
  /** This call's API key, overriding the client's. */
  apiKey?: string;
  /** Resolve to `{ data, meta, status, requestId, attempts }` instead of `data`. */
  withMeta?: boolean;
  /**
   * Sent as Idempotency-Key (retrainFromCsv, retrainFromRecords): the service answers a
   * repeat with the same job, so the call is then retried on network errors and on any
   * 429/503 too. Without it a side-effecting call retries only the service's own 429/503.
   */
  idempotencyKey?: string;
}

export type MetaCallOptions = CallOptions & { withMeta: true };

export interface WithMeta<T> {
  data: T;
  meta: Meta;
  status: number;
  requestId: string;
  attempts: number;
}

export interface CompareInput {
  imageA: UploadSource;
  imageB: UploadSource;
  tags?: Tags;
}
export interface CompareBase64Input {
  imageA: Base64Source;
  imageB: Base64Source;
  tags?: Tags;
}
export interface MatchInput {
  image: UploadSource;
  tags: Tags;
}
export interface MatchBase64Input {
  image: Base64Source;
  tags: Tags;
}
export interface EmbedImagesInput {
  images: UploadSource | readonly UploadSource[];
}
export interface EmbedImagesBase64Input {
  images: Base64Source | readonly Base64Source[];
}
export interface EmbedTextsInput {
  texts: string | readonly string[];
}
export interface RetrainCsvInput {
  /** The CSV: bytes, a Blob, a stream, its text, or a descriptor. */
  file: UploadSource | string | { data: BinaryData | StreamData | string; filename?: string; contentType?: string };
  /** Source column -> feature name or `label` (sent as the `mapping` JSON field). */
  mapping?: Record<string, string> | string;
  force?: boolean;
}

export interface WaitForJobOptions extends Omit<CallOptions, 'withMeta' | 'timeoutMs'> {
  /** Between polls. Default 500. */
  intervalMs?: number;
  /** The whole wait. Default 600000. */
  timeoutMs?: number;
}

// ---- client ---------------------------------------------------------------------------------

export interface Route {
  readonly method: 'GET' | 'POST' | 'DELETE';
  readonly path: string;
  /** No side effects: may be retried after a network error too. */
  readonly idempotent: boolean;
  readonly retries?: number;
}

export declare const ROUTES: Readonly<Record<
  | 'predictCareers' | 'analyzeCareers' | 'listCareers' | 'getInterestVocabulary' | 'getCareerModel'
  | 'listModelVersions' | 'activateModelVersion' | 'retrainFromCsv' | 'retrainFromRecords' | 'getRetrainJob'
  | 'listRetrainJobs' | 'retrainFromStore' | 'reportOutcomes' | 'getOutcomeStats' | 'eraseOutcomes' | 'getMonitoring'
  | 'compareImages' | 'compareImagesBase64' | 'matchImage' | 'matchImageBase64'
  | 'embedImages' | 'embedImagesBase64' | 'embedTexts' | 'health' | 'live' | 'ready',
  Route
>>;

export declare const VERSION: string;

export declare class MlClient {
  constructor(options: MlClientOptions);
  readonly baseUrl: string;

  /** POST /api/v1/career/predict */
  predictCareers(body: PredictRequest, options: MetaCallOptions): Promise<WithMeta<PredictResponse>>;
  predictCareers(body: PredictRequest, options?: CallOptions): Promise<PredictResponse>;
  /** POST /api/v1/career/analyze */
  analyzeCareers(body: AnalyzeRequest, options: MetaCallOptions): Promise<WithMeta<AnalyzeResponse>>;
  analyzeCareers(body: AnalyzeRequest, options?: CallOptions): Promise<AnalyzeResponse>;
  /** GET /api/v1/career/careers */
  listCareers(options: MetaCallOptions): Promise<WithMeta<CareerCatalog>>;
  listCareers(options?: CallOptions): Promise<CareerCatalog>;
  /** GET /api/v1/career/interests */
  getInterestVocabulary(options: MetaCallOptions): Promise<WithMeta<InterestVocabulary>>;
  getInterestVocabulary(options?: CallOptions): Promise<InterestVocabulary>;
  /** GET /api/v1/career/model */
  getCareerModel(options: MetaCallOptions): Promise<WithMeta<CareerModelInfo>>;
  getCareerModel(options?: CallOptions): Promise<CareerModelInfo>;

  /** GET /api/v1/career/models */
  listModelVersions(options: MetaCallOptions): Promise<WithMeta<ModelVersions>>;
  listModelVersions(options?: CallOptions): Promise<ModelVersions>;
  /** POST /api/v1/career/models/{version}/activate (admin key; retried on 429/503 only) */
  activateModelVersion(version: string, options: MetaCallOptions): Promise<WithMeta<Activation>>;
  activateModelVersion(version: string, options?: CallOptions): Promise<Activation>;
  /** POST /api/v1/career/retrain, multipart CSV (admin key; retried on 429/503 only, never with a stream) */
  retrainFromCsv(input: RetrainCsvInput, options: MetaCallOptions): Promise<WithMeta<RetrainJob>>;
  retrainFromCsv(input: RetrainCsvInput, options?: CallOptions): Promise<RetrainJob>;
  /** POST /api/v1/career/retrain, JSON records (admin key; retried on 429/503 only) */
  retrainFromRecords(body: RetrainRecordsRequest, options: MetaCallOptions): Promise<WithMeta<RetrainJob>>;
  retrainFromRecords(body: RetrainRecordsRequest, options?: CallOptions): Promise<RetrainJob>;
  /** GET /api/v1/career/retrain/{job_id} (admin key) */
  getRetrainJob(jobId: string, options: MetaCallOptions): Promise<WithMeta<RetrainJob>>;
  getRetrainJob(jobId: string, options?: CallOptions): Promise<RetrainJob>;
  /** Polls getRetrainJob until succeeded, rejected or failed. */
  waitForRetrainJob(jobId: string, options?: WaitForJobOptions): Promise<RetrainJob>;
  /** GET /api/v1/career/retrain: every job, newest first, with trigger and reason (admin key) */
  listRetrainJobs(options: MetaCallOptions): Promise<WithMeta<RetrainJobs>>;
  listRetrainJobs(options?: CallOptions): Promise<RetrainJobs>;
  /** POST /api/v1/career/retrain/store: a job on the outcome store (admin key; retried on 429/503 only) */
  retrainFromStore(body: StoreRetrainRequest | undefined, options: MetaCallOptions): Promise<WithMeta<RetrainJob>>;
  retrainFromStore(body?: StoreRetrainRequest, options?: CallOptions): Promise<RetrainJob>;

  /** POST /api/v1/career/outcomes (retried on 429/503 only: give records an idempotency_key) */
  reportOutcomes(body: OutcomeBatch, options: MetaCallOptions): Promise<WithMeta<OutcomeIngest>>;
  reportOutcomes(body: OutcomeBatch, options?: CallOptions): Promise<OutcomeIngest>;
  /** GET /api/v1/career/outcomes/stats */
  getOutcomeStats(options: MetaCallOptions): Promise<WithMeta<OutcomeStats>>;
  getOutcomeStats(options?: CallOptions): Promise<OutcomeStats>;
  /** DELETE /api/v1/career/outcomes?subject_id= (admin key) */
  eraseOutcomes(subjectId: string, options: MetaCallOptions): Promise<WithMeta<Erasure>>;
  eraseOutcomes(subjectId: string, options?: CallOptions): Promise<Erasure>;
  /** GET /api/v1/career/monitoring */
  getMonitoring(options: MetaCallOptions): Promise<WithMeta<Monitoring>>;
  getMonitoring(options?: CallOptions): Promise<Monitoring>;

  /** POST /api/v1/clip/compare (multipart) */
  compareImages(input: CompareInput, options: MetaCallOptions): Promise<WithMeta<CompareResult>>;
  compareImages(input: CompareInput, options?: CallOptions): Promise<CompareResult>;
  /** POST /api/v1/clip/json/compare (base64 JSON) */
  compareImagesBase64(input: CompareBase64Input, options: MetaCallOptions): Promise<WithMeta<CompareResult>>;
  compareImagesBase64(input: CompareBase64Input, options?: CallOptions): Promise<CompareResult>;
  /** POST /api/v1/clip/match (multipart) */
  matchImage(input: MatchInput, options: MetaCallOptions): Promise<WithMeta<MatchResult>>;
  matchImage(input: MatchInput, options?: CallOptions): Promise<MatchResult>;
  /** POST /api/v1/clip/json/match (base64 JSON) */
  matchImageBase64(input: MatchBase64Input, options: MetaCallOptions): Promise<WithMeta<MatchResult>>;
  matchImageBase64(input: MatchBase64Input, options?: CallOptions): Promise<MatchResult>;
  /** POST /api/v1/clip/embed/image (multipart) */
  embedImages(input: EmbedImagesInput, options: MetaCallOptions): Promise<WithMeta<EmbeddingResult>>;
  embedImages(input: EmbedImagesInput, options?: CallOptions): Promise<EmbeddingResult>;
  /** POST /api/v1/clip/json/embed/image (base64 JSON) */
  embedImagesBase64(input: EmbedImagesBase64Input, options: MetaCallOptions): Promise<WithMeta<EmbeddingResult>>;
  embedImagesBase64(input: EmbedImagesBase64Input, options?: CallOptions): Promise<EmbeddingResult>;
  /** POST /api/v1/clip/embed/text */
  embedTexts(input: EmbedTextsInput, options: MetaCallOptions): Promise<WithMeta<EmbeddingResult>>;
  embedTexts(input: EmbedTextsInput, options?: CallOptions): Promise<EmbeddingResult>;

  /** GET /health (never retried) */
  health(options?: CallOptions): Promise<Health>;
  /** GET /health/live (never retried) */
  live(options?: CallOptions): Promise<Liveness>;
  /** GET /health/ready: throws MlServiceError NOT_READY (503) until every model is loaded. */
  ready(options?: CallOptions): Promise<Readiness>;
  /** Polls /health/ready until 200 or timeoutMs (default 120000). */
  waitUntilReady(options?: { timeoutMs?: number; intervalMs?: number; signal?: AbortSignal }): Promise<Readiness>;
}

export declare function createClient(options: MlClientOptions): MlClient;

/** Codes the client itself produces; the service's codes (VALIDATION_ERROR, UNAUTHORIZED, ...) pass through. */
export declare const ClientErrorCode: Readonly<{
  TIMEOUT: 'TIMEOUT';
  ABORTED: 'ABORTED';
  NETWORK_ERROR: 'NETWORK_ERROR';
  INVALID_RESPONSE: 'INVALID_RESPONSE';
}>;

export declare class MlServiceError extends Error {
  constructor(init: {
    code: string;
    message: string;
    details?: Array<Record<string, unknown>>;
    status?: number | null;
    requestId?: string | null;
    retryAfterMs?: number | null;
    attempts?: number;
    cause?: unknown;
  });
  readonly name: 'MlServiceError';
  /** The service's `error.code` (UNAUTHORIZED, VALIDATION_ERROR, OVERLOADED, ...) or a client code. */
  code: string;
  /** The service's `error.details`: per-field problems for a 422. */
  details: Array<Record<string, unknown>>;
  /** HTTP status; null when no response arrived (TIMEOUT, ABORTED, NETWORK_ERROR). */
  status: number | null;
  /** meta.request_id of the answer, else the X-Request-ID sent. */
  requestId: string | null;
  /** From Retry-After, when the answer had one. */
  retryAfterMs: number | null;
  /** HTTP attempts made. */
  attempts: number;
  /** 429 or 503: the service did not process the request. */
  readonly retryable: boolean;
  toJSON(): { name: string; code: string; message: string; details: Array<Record<string, unknown>>; status: number | null; requestId: string | null };
}

export declare function isMlServiceError(value: unknown): value is MlServiceError;

/** Retry-After (seconds or HTTP date) in milliseconds; null when absent or unreadable. */
export declare function parseRetryAfter(value: string | null | undefined, now?: number): number | null;
