/**
 * Client of the Skill Compass ML service (`/api/v1`), for the Node.js gateway.
 * No runtime dependencies: Node's global fetch, FormData, Blob and AbortSignal.
 */
import { randomUUID } from 'node:crypto';

import { ClientErrorCode, MlServiceError } from './errors.js';
import { buildMultipart, toBase64, toFilePart } from './multipart.js';

export const VERSION = '0.1.0';

/**
 * Every route the client calls. `idempotent`: the call has no side effects, so it may be
 * retried after a network error or any 429/503. A call with side effects is retried only
 * when the 429/503 is the service's own envelope (it says "not processed"; a proxy's 503
 * says nothing of the sort), or when it carries an `idempotencyKey` (the service answers a
 * replay with the same job). A test checks this table against the service's OpenAPI document.
 */
export const ROUTES = Object.freeze({
  predictCareers: { method: 'POST', path: '/api/v1/career/predict', idempotent: true },
  analyzeCareers: { method: 'POST', path: '/api/v1/career/analyze', idempotent: true },
  listCareers: { method: 'GET', path: '/api/v1/career/careers', idempotent: true },
  getInterestVocabulary: { method: 'GET', path: '/api/v1/career/interests', idempotent: true },
  getCareerModel: { method: 'GET', path: '/api/v1/career/model', idempotent: true },
  listModelVersions: { method: 'GET', path: '/api/v1/career/models', idempotent: true },
  activateModelVersion: { method: 'POST', path: '/api/v1/career/models/{version}/activate', idempotent: false },
  retrainFromCsv: { method: 'POST', path: '/api/v1/career/retrain', idempotent: false },
  retrainFromRecords: { method: 'POST', path: '/api/v1/career/retrain', idempotent: false },
  getRetrainJob: { method: 'GET', path: '/api/v1/career/retrain/{job_id}', idempotent: true },
  listRetrainJobs: { method: 'GET', path: '/api/v1/career/retrain', idempotent: true },
  retrainFromStore: { method: 'POST', path: '/api/v1/career/retrain/store', idempotent: false },
  // Not retried after a network error: records without an idempotency_key would count twice.
  reportOutcomes: { method: 'POST', path: '/api/v1/career/outcomes', idempotent: false },
  getOutcomeStats: { method: 'GET', path: '/api/v1/career/outcomes/stats', idempotent: true },
  // Erasing twice deletes nothing more: safe to retry.
  eraseOutcomes: { method: 'DELETE', path: '/api/v1/career/outcomes', idempotent: true },
  getMonitoring: { method: 'GET', path: '/api/v1/career/monitoring', idempotent: true },
  compareImages: { method: 'POST', path: '/api/v1/clip/compare', idempotent: true },
  compareImagesBase64: { method: 'POST', path: '/api/v1/clip/json/compare', idempotent: true },
  matchImage: { method: 'POST', path: '/api/v1/clip/match', idempotent: true },
  matchImageBase64: { method: 'POST', path: '/api/v1/clip/json/match', idempotent: true },
  embedImages: { method: 'POST', path: '/api/v1/clip/embed/image', idempotent: true },
  embedImagesBase64: { method: 'POST', path: '/api/v1/clip/json/embed/image', idempotent: true },
  embedTexts: { method: 'POST', path: '/api/v1/clip/embed/text', idempotent: true },
  // Probes (outside /api/v1, no key needed): never retried, they report the state now.
  health: { method: 'GET', path: '/health', idempotent: true, retries: 0 },
  live: { method: 'GET', path: '/health/live', idempotent: true, retries: 0 },
  ready: { method: 'GET', path: '/health/ready', idempotent: true, retries: 0 },
});

const DEFAULTS = Object.freeze({
  timeoutMs: 30_000,
  retries: 2,
  backoffBaseMs: 200,
  backoffMaxMs: 5_000,
  maxRetryAfterMs: 30_000,
});

const TERMINAL_JOB_STATES = new Set(['succeeded', 'rejected', 'failed']);
const RESERVED = new Set(['x-api-key', 'x-request-id', 'traceparent', 'tracestate']);

/** One header from a Headers instance, a plain (Node) header object or a request holding one. */
function readHeader(source, name) {
  if (source == null || typeof source !== 'object') return undefined;
  if (source.headers != null && typeof source.headers === 'object') return readHeader(source.headers, name);
  if (typeof source.get === 'function') return source.get(name) ?? undefined;
  const lower = name.toLowerCase();
  for (const [key, value] of Object.entries(source)) {
    if (key.toLowerCase() === lower) {
      const first = Array.isArray(value) ? value[0] : value;
      return first == null ? undefined : String(first);
    }
  }
  return undefined;
}

function plainHeaders(source) {
  const out = {};
  if (source == null) return out;
  const entries = source instanceof Headers || source instanceof Map ? source.entries() : Object.entries(source);
  for (const [key, value] of entries) {
    if (value !== undefined && value !== null) out[key.toLowerCase()] = String(value);
  }
  return out;
}

/** Both signals, either of which aborts (AbortSignal.any where the runtime has it). */
function anySignal(signals) {
  const list = signals.filter(Boolean);
  if (list.length <= 1) return list[0];
  if (typeof AbortSignal.any === 'function') return AbortSignal.any(list);
  const controller = new AbortController();
  for (const signal of list) {
    if (signal.aborted) {
      controller.abort(signal.reason);
      break;
    }
    signal.addEventListener('abort', () => controller.abort(signal.reason), { once: true });
  }
  return controller.signal;
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Retry-After in milliseconds: delta-seconds (decimals accepted) or an HTTP date. */
export function parseRetryAfter(value, now = Date.now()) {
  if (value == null || value === '') return null;
  const text = String(value).trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  const date = Date.parse(text);
  return Number.isNaN(date) ? null : Math.max(0, date - now);
}

function tagsList(tags) {
  if (tags == null) return [];
  return Array.isArray(tags) ? tags.map(String) : [String(tags)];
}

export class MlClient {
  #baseUrl;
  #apiKey;
  #headers;
  #fetch;
  #config;

  /**
   * @param {object} options
   * @param {string} options.baseUrl  e.g. http://ml:8000 (a trailing /api/v1 is accepted)
   * @param {string} [options.apiKey]  sent as X-API-Key
   * @param {number} [options.timeoutMs=30000]  deadline of one call, retries and waits included (0: none)
   * @param {number} [options.retries=2]  extra attempts after the first
   * @param {number} [options.backoffBaseMs=200]  first backoff; doubles each retry, with jitter
   * @param {number} [options.backoffMaxMs=5000]  cap of one backoff
   * @param {number} [options.maxRetryAfterMs=30000]  a longer Retry-After is not waited for
   * @param {Record<string, string>} [options.headers]  sent with every request
   * @param {typeof fetch} [options.fetch]  a fetch implementation (tests, instrumentation)
   */
  constructor(options = {}) {
    const { baseUrl, apiKey, headers, fetch: fetchImpl, ...rest } = options;
    if (!baseUrl) throw new TypeError('MlClient needs a baseUrl, e.g. http://localhost:8000');
    this.#baseUrl = String(baseUrl).replace(/\/+$/, '').replace(/\/api\/v1$/, '');
    new URL(this.#baseUrl); // throws on a malformed URL, now rather than on the first call
    this.#apiKey = apiKey || undefined;
    this.#headers = plainHeaders(headers);
    this.#fetch = fetchImpl ?? globalThis.fetch;
    this.#config = { ...DEFAULTS };
    for (const key of Object.keys(DEFAULTS)) {
      if (rest[key] !== undefined) {
        const value = Number(rest[key]);
        if (!Number.isFinite(value) || value < 0) throw new RangeError(`${key} must be a number >= 0`);
        this.#config[key] = value;
      }
    }
  }

  get baseUrl() {
    return this.#baseUrl;
  }

  // ---- career ------------------------------------------------------------------------------

  /** Top-k careers with probabilities, compatibility, strengths and gaps. */
  predictCareers(body, options) {
    return this.#call('predictCareers', { json: body }, options);
  }

  /** Per-feature contributions, cohort percentiles and improvements for some or all careers. */
  analyzeCareers(body, options) {
    return this.#call('analyzeCareers', { json: body }, options);
  }

  /** The career catalog (careers of the active model first). */
  listCareers(options) {
    return this.#call('listCareers', {}, options);
  }

  /** RIASEC dimensions and the interest keywords `interests.keywords` accepts. */
  getInterestVocabulary(options) {
    return this.#call('getInterestVocabulary', {}, options);
  }

  /** The active career model: card, feature spec, careers, metrics. */
  getCareerModel(options) {
    return this.#call('getCareerModel', {}, options);
  }

  // ---- registry (activation and retraining need an admin key) -------------------------------

  /** Every model version, newest first, with the active flag. */
  listModelVersions(options) {
    return this.#call('listModelVersions', {}, options);
  }

  /** Activate a version or roll back (admin). Retried only on the service's own 429/503. */
  activateModelVersion(version, options) {
    return this.#call('activateModelVersion', { params: { version } }, options);
  }

  /**
   * Start a retraining job from a CSV upload (admin); answers the queued job (HTTP 202).
   * `file`: Buffer/Uint8Array/Blob/string (CSV text) or a Readable/ReadableStream (streamed);
   * or `{ data, filename, contentType }`.
   */
  retrainFromCsv({ file, mapping, force } = {}, options) {
    const parts = () => {
      const list = [];
      if (mapping != null) list.push({ name: 'mapping', value: typeof mapping === 'string' ? mapping : JSON.stringify(mapping) });
      if (force != null) list.push({ name: 'force', value: force ? 'true' : 'false' });
      list.push({ name: 'file', file: toFilePart(file, 'file', { filename: 'data.csv', contentType: 'text/csv', allowString: true }) });
      return list;
    };
    return this.#call('retrainFromCsv', { parts }, options);
  }

  /** Start a retraining job from JSON records (admin). */
  retrainFromRecords(body, options) {
    return this.#call('retrainFromRecords', { json: body }, options);
  }

  /** A retraining job's state, progress, metrics and reasons (admin). */
  getRetrainJob(jobId, options) {
    return this.#call('getRetrainJob', { params: { job_id: jobId } }, options);
  }

  /**
   * Poll a retraining job until it is succeeded, rejected or failed; resolves to the job.
   * `timeoutMs` here bounds the whole wait (default 10 minutes); each poll uses the client's.
   */
  async waitForRetrainJob(jobId, { intervalMs = 500, timeoutMs = 600_000, signal, ...options } = {}) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const job = await this.getRetrainJob(jobId, { ...options, signal });
      if (TERMINAL_JOB_STATES.has(job.state)) return job;
      if (Date.now() + intervalMs > deadline) {
        throw new MlServiceError({
          code: ClientErrorCode.TIMEOUT,
          message: `Retraining job ${jobId} is still ${job.state} after ${timeoutMs} ms.`,
          details: [{ job_id: jobId, state: job.state, stage: job.stage }],
        });
      }
      await sleep(intervalMs, signal);
    }
  }

  /** Every retraining job, newest first, with `trigger` and (automatic jobs) `reason` (admin). */
  listRetrainJobs(options) {
    return this.#call('listRetrainJobs', {}, options);
  }

  /** Start a retraining job on the outcome store (admin); answers the queued job (HTTP 202). */
  retrainFromStore(body = {}, options) {
    return this.#call('retrainFromStore', { json: body }, options);
  }

  // ---- closed loop: outcomes and monitoring -------------------------------------------------

  /**
   * Report the careers students chose: `{ outcomes: [{ student, career, observed_at,
   * subject_id?, idempotency_key? }] }`. All stored or (any invalid row: 422 naming each) none.
   */
  reportOutcomes(body, options) {
    return this.#call('reportOutcomes', { json: body }, options);
  }

  /** Outcome counts by career and week, and how many are new since the active model. */
  getOutcomeStats(options) {
    return this.#call('getOutcomeStats', {}, options);
  }

  /** Delete every outcome of a subject (admin); `{ deleted: 0 }` for an unknown one. */
  eraseOutcomes(subjectId, options) {
    if (subjectId == null || subjectId === '') throw new TypeError('subjectId is required');
    return this.#call('eraseOutcomes', { query: { subject_id: String(subjectId) } }, options);
  }

  /** Drift (PSI per feature and of top-1 careers) and live quality of the active model. */
  getMonitoring(options) {
    return this.#call('getMonitoring', {}, options);
  }

  // ---- CLIP --------------------------------------------------------------------------------

  /**
   * Compare two images (multipart). Each image: Buffer/Uint8Array/ArrayBuffer/Blob, or a
   * Readable/ReadableStream (streamed, not buffered), or `{ data, filename, contentType }`.
   */
  compareImages({ imageA, imageB, tags } = {}, options) {
    const parts = () => [
      { name: 'image_a', file: toFilePart(imageA, 'imageA', { filename: 'image_a', contentType: 'application/octet-stream' }) },
      { name: 'image_b', file: toFilePart(imageB, 'imageB', { filename: 'image_b', contentType: 'application/octet-stream' }) },
      ...tagsList(tags).map((value) => ({ name: 'tags', value })),
    ];
    return this.#call('compareImages', { parts }, options);
  }

  /** Compare two images sent as base64 JSON (strings are sent as is: base64 or data URIs). */
  async compareImagesBase64({ imageA, imageB, tags } = {}, options) {
    const json = { image_a: await toBase64(imageA, 'imageA'), image_b: await toBase64(imageB, 'imageB') };
    if (tags != null) json.tags = tagsList(tags);
    return this.#call('compareImagesBase64', { json }, options);
  }

  /** Match one image against 1..MAX_TAGS text tags (multipart). */
  matchImage({ image, tags } = {}, options) {
    const parts = () => [
      { name: 'image', file: toFilePart(image, 'image', { filename: 'image', contentType: 'application/octet-stream' }) },
      ...tagsList(tags).map((value) => ({ name: 'tags', value })),
    ];
    return this.#call('matchImage', { parts }, options);
  }

  /** Match one base64 image against text tags. */
  async matchImageBase64({ image, tags } = {}, options) {
    const json = { image: await toBase64(image, 'image'), tags: tagsList(tags) };
    return this.#call('matchImageBase64', { json }, options);
  }

  /** L2-normalised embeddings of 1..MAX_IMAGES_PER_REQUEST images (multipart). */
  embedImages({ images } = {}, options) {
    const list = Array.isArray(images) ? images : [images];
    const parts = () =>
      list.map((image, i) => ({
        name: 'images',
        file: toFilePart(image, `images[${i}]`, { filename: `image-${i}`, contentType: 'application/octet-stream' }),
      }));
    return this.#call('embedImages', { parts }, options);
  }

  /** Embeddings of base64 images. */
  async embedImagesBase64({ images } = {}, options) {
    const list = Array.isArray(images) ? images : [images];
    const json = { images: await Promise.all(list.map((image, i) => toBase64(image, `images[${i}]`))) };
    return this.#call('embedImagesBase64', { json }, options);
  }

  /** L2-normalised embeddings of texts. */
  embedTexts({ texts } = {}, options) {
    return this.#call('embedTexts', { json: { texts: Array.isArray(texts) ? texts : [texts] } }, options);
  }

  // ---- probes ------------------------------------------------------------------------------

  /** Service health: status and each model's state. */
  health(options) {
    return this.#call('health', {}, options);
  }

  /** Liveness probe. */
  live(options) {
    return this.#call('live', {}, options);
  }

  /** Readiness probe: resolves when every enabled model is loaded, else throws NOT_READY (503). */
  ready(options) {
    return this.#call('ready', {}, options);
  }

  /** Poll /health/ready until it answers 200 or `timeoutMs` (default 120 s) passes. */
  async waitUntilReady({ timeoutMs = 120_000, intervalMs = 250, signal } = {}) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await this.ready({ signal, timeoutMs: Math.max(1, Math.min(5_000, deadline - Date.now())) });
      } catch (err) {
        if (err.code === ClientErrorCode.ABORTED || Date.now() + intervalMs > deadline) throw err;
      }
      await sleep(intervalMs, signal);
    }
  }

  // ---- transport ---------------------------------------------------------------------------

  /**
   * One call: headers, deadline, attempts, envelope.
   * @param {keyof typeof ROUTES} name
   * @param {{ params?: Record<string, string>, query?: Record<string, string>, json?: unknown, parts?: () => Array<object> }} request
   * @param {import('../index.js').CallOptions} [options]
   */
  async #call(name, request, options = {}) {
    const route = ROUTES[name];
    const cfg = this.#config;
    let path = route.path;
    for (const [key, value] of Object.entries(request.params ?? {})) {
      if (value == null || value === '') throw new TypeError(`${key} is required`);
      path = path.replace(`{${key}}`, encodeURIComponent(String(value)));
    }
    const query = new URLSearchParams(request.query ?? {}).toString();
    const url = `${this.#baseUrl}${path}${query ? `?${query}` : ''}`;

    const incoming = options.incoming;
    const requestId = options.requestId ?? readHeader(incoming, 'x-request-id') ?? randomUUID().replaceAll('-', '');
    const traceparent = options.traceparent ?? readHeader(incoming, 'traceparent');
    const tracestate = options.tracestate ?? (traceparent ? readHeader(incoming, 'tracestate') : undefined);

    const headers = { accept: 'application/json', 'user-agent': `skill-compass-ml-client/${VERSION}` };
    for (const source of [this.#headers, plainHeaders(options.headers)]) {
      for (const [key, value] of Object.entries(source)) if (!RESERVED.has(key)) headers[key] = value;
    }
    const apiKey = options.apiKey ?? this.#apiKey;
    if (apiKey) headers['x-api-key'] = apiKey;
    const idempotencyKey = options.idempotencyKey;
    if (idempotencyKey != null) headers['idempotency-key'] = String(idempotencyKey);
    // Safe to send again: no side effects, or the service deduplicates by the key.
    const replaySafe = route.idempotent || idempotencyKey != null;
    headers['x-request-id'] = requestId;
    if (traceparent) headers.traceparent = traceparent;
    if (tracestate) headers.tracestate = tracestate;

    const timeoutMs = options.timeoutMs ?? cfg.timeoutMs;
    const retries = options.retries ?? route.retries ?? cfg.retries;
    const started = Date.now();
    const deadline = timeoutMs > 0 && Number.isFinite(timeoutMs) ? AbortSignal.timeout(timeoutMs) : undefined;
    const signal = anySignal([options.signal, deadline]);

    const failure = (err, attempts) => {
      if (options.signal?.aborted) {
        return new MlServiceError({ code: ClientErrorCode.ABORTED, message: `The call to ${route.path} was aborted by the caller.`, requestId, attempts, cause: options.signal.reason });
      }
      if (deadline?.aborted) {
        return new MlServiceError({ code: ClientErrorCode.TIMEOUT, message: `The ML service did not answer ${route.path} within ${timeoutMs} ms.`, requestId, attempts, cause: err });
      }
      const why = err?.cause?.code ?? err?.cause?.message ?? err?.message ?? String(err);
      return new MlServiceError({ code: ClientErrorCode.NETWORK_ERROR, message: `Could not reach the ML service at ${this.#baseUrl} (${why}).`, requestId, attempts, cause: err });
    };

    for (let attempt = 1; ; attempt++) {
      const init = { method: route.method, headers: { ...headers }, signal, redirect: 'error' };
      let replayable = true;
      if (request.json !== undefined) {
        init.headers['content-type'] = 'application/json';
        init.body = JSON.stringify(request.json);
      } else if (request.parts) {
        const multipart = buildMultipart(request.parts());
        Object.assign(init.headers, multipart.headers);
        init.body = multipart.body;
        if (multipart.duplex) init.duplex = multipart.duplex;
        replayable = multipart.replayable;
      }
      const mayRetry = replayable && attempt <= retries;

      let response;
      let text;
      try {
        response = await this.#fetch(url, init);
        text = await response.text();
      } catch (err) {
        const error = failure(err, attempt);
        // A network error may come after the service acted: only replay-safe calls retry.
        if (error.code === ClientErrorCode.NETWORK_ERROR && replaySafe && mayRetry) {
          if (await this.#pause(this.#backoff(attempt), signal, started, timeoutMs, (e) => failure(e, attempt))) continue;
        }
        throw error;
      }

      const status = response.status;
      const echoed = response.headers.get('x-request-id') ?? requestId;
      let envelope;
      try {
        envelope = text ? JSON.parse(text) : undefined;
      } catch {
        envelope = undefined;
      }
      const isEnvelope = envelope != null && typeof envelope === 'object' && typeof envelope.success === 'boolean';

      if (response.ok && isEnvelope && envelope.success) {
        if (options.withMeta) {
          return { data: envelope.data, meta: envelope.meta, status, requestId: envelope.meta?.request_id ?? echoed, attempts: attempt };
        }
        return envelope.data;
      }

      const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'));
      const error = isEnvelope && envelope.error
        ? new MlServiceError({
            code: envelope.error.code ?? `HTTP_${status}`,
            message: envelope.error.message ?? `HTTP ${status}`,
            details: envelope.error.details,
            status,
            requestId: envelope.meta?.request_id ?? echoed,
            retryAfterMs,
            attempts: attempt,
          })
        : new MlServiceError({
            code: ClientErrorCode.INVALID_RESPONSE,
            message: `Unexpected HTTP ${status} answer from ${route.path} (not the service's JSON envelope).`,
            details: [{ status, body: (text ?? '').slice(0, 500) }],
            status,
            requestId: echoed,
            retryAfterMs,
            attempts: attempt,
          });

      // The service's 429 and 503 mean "not processed": every route may retry them. A 429/503
      // that is not its envelope (a proxy, a load balancer, uvicorn's connection limit) may
      // come after the service acted: only replay-safe calls retry that.
      const notProcessed = isEnvelope && envelope.error != null;
      if ((status === 429 || status === 503) && mayRetry && (notProcessed || replaySafe)) {
        let wait;
        if (retryAfterMs != null && retryAfterMs > 0) {
          if (retryAfterMs > cfg.maxRetryAfterMs) throw error;
          wait = retryAfterMs + Math.random() * Math.min(1_000, retryAfterMs * 0.1);
        } else {
          wait = this.#backoff(attempt);
        }
        if (await this.#pause(wait, signal, started, timeoutMs, (e) => failure(e, attempt))) continue;
      }
      throw error;
    }
  }

  /** Exponential backoff with equal jitter: half fixed, half random. */
  #backoff(attempt) {
    const exp = Math.min(this.#config.backoffMaxMs, this.#config.backoffBaseMs * 2 ** (attempt - 1));
    return exp / 2 + Math.random() * (exp / 2);
  }

  /**
   * Wait before a retry. False (and no wait) when the wait would pass the call's deadline:
   * the caller then throws the last error at once. An abort while waiting throws `onAbort(reason)`.
   */
  async #pause(ms, signal, started, timeoutMs, onAbort) {
    if (timeoutMs > 0 && Number.isFinite(timeoutMs) && Date.now() - started + ms >= timeoutMs) return false;
    try {
      await sleep(ms, signal);
    } catch (reason) {
      throw onAbort(reason);
    }
    return true;
  }
}

/** `new MlClient(options)`. */
export function createClient(options) {
  return new MlClient(options);
}
