// Retries, backoff, Retry-After, timeouts, aborts, header propagation and body encodings,
// against a scripted local HTTP stub (no ML service needed).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';

import { MlClient, MlServiceError, parseRetryAfter, VERSION } from '../src/index.js';
import { freePort } from './helpers/service.js';
import { delay, fail, hangUp, ok, reply, startStub } from './helpers/stub.js';

let stub;
before(async () => {
  stub = await startStub();
});
after(() => stub.close());

const make = (options = {}) => new MlClient({ baseUrl: stub.url, apiKey: 'stub-key', backoffBaseMs: 20, timeoutMs: 5_000, ...options });
const PROFILE = { academic_scores: { math: 90 } };

describe('retries', () => {
  test('503 with Retry-After is retried after that many seconds, with the same request id', async () => {
    stub.script(fail(503, 'MODEL_LOADING', { 'retry-after': '1' }), ok({ recommendations: [] }));
    const started = Date.now();
    const result = await make().predictCareers(PROFILE, { withMeta: true });
    const elapsed = Date.now() - started;
    assert.deepEqual(result.data, { recommendations: [] });
    assert.equal(result.attempts, 2);
    assert.equal(stub.requests.length, 2);
    assert.ok(elapsed >= 990, `waited only ${elapsed} ms`);
    assert.ok(stub.requests[1].at - stub.requests[0].at >= 990);
    assert.equal(stub.requests[0].headers['x-request-id'], stub.requests[1].headers['x-request-id']);
    assert.equal(stub.requests[1].body.toString(), JSON.stringify(PROFILE));
  });

  test('429 without Retry-After backs off exponentially', async () => {
    stub.script(fail(429, 'OVERLOADED'), fail(429, 'OVERLOADED'), ok([1]));
    const data = await make({ retries: 3, backoffBaseMs: 50 }).listCareers();
    assert.deepEqual(data, [1]);
    const [a, b, c] = stub.requests.map((r) => r.at);
    assert.ok(b - a >= 20, `first backoff ${b - a} ms`); // 50 ms with half jitter: 25..50
    assert.ok(c - b >= 45, `second backoff ${c - b} ms`); // 100 ms with half jitter: 50..100
  });

  test('when retries run out, the last error is thrown with its status and code', async () => {
    stub.script(fail(503, 'MODEL_UNAVAILABLE'));
    await assert.rejects(make({ retries: 2 }).getCareerModel(), (err) => {
      assert.ok(err instanceof MlServiceError);
      assert.equal(err.status, 503);
      assert.equal(err.code, 'MODEL_UNAVAILABLE');
      assert.equal(err.attempts, 3);
      assert.equal(err.retryable, true);
      return true;
    });
    assert.equal(stub.requests.length, 3);
  });

  test('a Retry-After past the deadline or the cap is not waited for', async () => {
    stub.script(fail(429, 'OVERLOADED', { 'retry-after': '10' }));
    let started = Date.now();
    await assert.rejects(make({ timeoutMs: 2_000 }).embedTexts({ texts: ['x'] }), (err) => err.code === 'OVERLOADED' && err.retryAfterMs === 10_000);
    assert.ok(Date.now() - started < 1_000);
    assert.equal(stub.requests.length, 1);
    stub.script(fail(503, 'MODEL_LOADING', { 'retry-after': '120' }));
    started = Date.now();
    await assert.rejects(make({ timeoutMs: 0, maxRetryAfterMs: 5_000 }).listCareers(), (err) => err.code === 'MODEL_LOADING');
    assert.ok(Date.now() - started < 1_000);
  });

  test('4xx and 500 are not retried', async () => {
    stub.script(fail(422, 'VALIDATION_ERROR'));
    await assert.rejects(make().predictCareers(PROFILE), (err) => err.status === 422 && err.attempts === 1);
    stub.script(fail(500, 'INTERNAL_ERROR'));
    await assert.rejects(make().predictCareers(PROFILE), (err) => err.status === 500 && err.attempts === 1);
    assert.equal(stub.requests.length, 1);
  });

  test('network errors: idempotent calls retry, side-effecting POSTs do not', async () => {
    stub.script(hangUp(), ok({ ok: 1 }));
    assert.deepEqual(await make().predictCareers(PROFILE), { ok: 1 });
    assert.equal(stub.requests.length, 2);

    stub.script(hangUp(), ok({ id: 'job' }));
    await assert.rejects(make().retrainFromRecords({ records: [{ a: 1 }] }), (err) => {
      assert.equal(err.code, 'NETWORK_ERROR');
      assert.equal(err.status, null);
      assert.equal(err.attempts, 1);
      return true;
    });
    assert.equal(stub.requests.length, 1);

    stub.script(hangUp(), ok({}));
    await assert.rejects(make().activateModelVersion('v1'), (err) => err.code === 'NETWORK_ERROR');
    assert.equal(stub.requests.length, 1);
  });

  test('side-effecting POSTs are retried on 429/503 ("not processed")', async () => {
    stub.script(fail(503, 'MODEL_LOADING', { 'retry-after': '0' }), ok({ version: 'v1', active: true, previous: null }));
    const activation = await make().activateModelVersion('v 1/x');
    assert.equal(activation.version, 'v1');
    assert.equal(stub.requests.length, 2);
    assert.equal(stub.requests[0].url, '/api/v1/career/models/v%201%2Fx/activate');

    stub.script(fail(429, 'OVERLOADED'), ok({ id: 'job-1' }));
    const job = await make().retrainFromCsv({ file: Buffer.from('a,b\n1,2\n'), mapping: { a: 'math', b: 'label' }, force: true });
    assert.equal(job.id, 'job-1');
    assert.equal(stub.requests.length, 2);
    for (const request of stub.requests) {
      const body = request.body.toString();
      assert.match(request.headers['content-type'], /^multipart\/form-data; boundary=/);
      assert.match(body, /name="mapping"\r\n\r\n\{"a":"math","b":"label"\}\r\n/);
      assert.match(body, /name="force"\r\n\r\ntrue\r\n/);
      assert.match(body, /name="file"; filename="data.csv"\r\nContent-Type: text\/csv\r\n\r\na,b\n1,2\n\r\n/);
    }
  });

  test("a side-effecting call is not retried on a 503 that is not the service's envelope", async () => {
    // A proxy's HTML 503 may come after the service took the job: retrainFromRecords was
    // sent three times against one.
    const html = () => reply(503, '<html><body>503 Service Temporarily Unavailable</body></html>', { 'content-type': 'text/html', 'retry-after': '0' });
    stub.script(html(), html(), html());
    await assert.rejects(make().retrainFromRecords({ records: [{ a: 1 }] }), (err) => {
      assert.equal(err.code, 'INVALID_RESPONSE');
      assert.equal(err.status, 503);
      assert.equal(err.attempts, 1);
      return true;
    });
    assert.equal(stub.requests.length, 1);

    stub.script(reply(429, 'Too Many Requests', { 'content-type': 'text/plain' }));
    await assert.rejects(make().activateModelVersion('v1'), (err) => err.status === 429 && err.attempts === 1);
    assert.equal(stub.requests.length, 1);

    // Side-effect-free calls still retry it.
    stub.script(html(), ok({ ok: 1 }));
    assert.deepEqual(await make().predictCareers(PROFILE), { ok: 1 });
    assert.equal(stub.requests.length, 2);
  });

  test('with an idempotency key, a side-effecting call is retried like a safe one', async () => {
    const html = reply(503, '<html>busy</html>', { 'content-type': 'text/html', 'retry-after': '0' });
    stub.script(html, hangUp(), ok({ id: 'job-1' }));
    const job = await make().retrainFromRecords({ records: [{ a: 1 }] }, { idempotencyKey: 'import-2026-12-02' });
    assert.equal(job.id, 'job-1');
    assert.equal(stub.requests.length, 3);
    for (const request of stub.requests) assert.equal(request.headers['idempotency-key'], 'import-2026-12-02');
  });

  test('probes are never retried', async () => {
    stub.script(fail(503, 'NOT_READY', { 'retry-after': '0' }));
    await assert.rejects(make().ready(), (err) => err.code === 'NOT_READY' && err.attempts === 1);
  });

  test('an answer that is not the envelope is INVALID_RESPONSE', async () => {
    stub.script(reply(502, '<html>Bad Gateway</html>', { 'content-type': 'text/html' }));
    await assert.rejects(make().listCareers(), (err) => {
      assert.equal(err.code, 'INVALID_RESPONSE');
      assert.equal(err.status, 502);
      assert.match(err.details[0].body, /Bad Gateway/);
      return true;
    });
    assert.equal(stub.requests.length, 1);
  });
});

describe('timeouts and aborts', () => {
  test('timeoutMs aborts a slow call with TIMEOUT', async () => {
    stub.script(delay(3_000, ok({})));
    const started = Date.now();
    await assert.rejects(make({ timeoutMs: 200 }).predictCareers(PROFILE), (err) => {
      assert.ok(err instanceof MlServiceError);
      assert.equal(err.code, 'TIMEOUT');
      assert.equal(err.status, null);
      assert.ok(err.requestId);
      return true;
    });
    assert.ok(Date.now() - started < 1_500);
    assert.equal(stub.requests.length, 1, 'a timed-out call is not retried');
  });

  test('the per-call timeout overrides the client one', async () => {
    stub.script(delay(3_000, ok({})));
    await assert.rejects(make({ timeoutMs: 10_000 }).listCareers({ timeoutMs: 150 }), (err) => err.code === 'TIMEOUT');
  });

  test("the caller's signal aborts with ABORTED, also during a backoff wait", async () => {
    stub.script(delay(3_000, ok({})));
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('client went away')), 100);
    await assert.rejects(make().listCareers({ signal: controller.signal }), (err) => err.code === 'ABORTED' && err.cause.message === 'client went away');

    stub.script(fail(503, 'MODEL_LOADING', { 'retry-after': '3' }));
    const waiting = new AbortController();
    setTimeout(() => waiting.abort(), 150);
    const started = Date.now();
    await assert.rejects(make().listCareers({ signal: waiting.signal }), (err) => err.code === 'ABORTED');
    assert.ok(Date.now() - started < 1_000);
  });

  test('a closed port is NETWORK_ERROR after the retries', async () => {
    const dead = new MlClient({ baseUrl: `http://127.0.0.1:${await freePort()}`, retries: 1, backoffBaseMs: 10 });
    await assert.rejects(dead.listCareers(), (err) => err.code === 'NETWORK_ERROR' && err.attempts === 2);
  });
});

describe('headers and bodies', () => {
  test('API key, request id, traceparent/tracestate from the incoming request, default headers', async () => {
    stub.script(ok({}));
    const client = make({ headers: { 'X-Gateway': 'gw-1', 'x-api-key': 'ignored', 'X-Request-ID': 'ignored' } });
    const incoming = {
      headers: {
        'x-request-id': 'incoming-1',
        traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
        tracestate: 'vendor=1',
        cookie: 'not forwarded',
      },
    };
    await client.listCareers({ incoming, headers: { 'x-extra': 'yes' } });
    const h = stub.requests[0].headers;
    assert.equal(h['x-api-key'], 'stub-key');
    assert.equal(h['x-request-id'], 'incoming-1');
    assert.equal(h.traceparent, incoming.headers.traceparent);
    assert.equal(h.tracestate, 'vendor=1');
    assert.equal(h['x-gateway'], 'gw-1');
    assert.equal(h['x-extra'], 'yes');
    assert.equal(h.cookie, undefined);
    assert.equal(h['user-agent'], `skill-compass-ml-client/${VERSION}`);
    assert.equal(h.accept, 'application/json');
  });

  test('explicit requestId/traceparent win; a Headers instance works as incoming', async () => {
    stub.script(ok({}));
    const incoming = new Headers({ 'X-Request-ID': 'from-headers', traceparent: '00-11111111111111111111111111111111-2222222222222222-01' });
    await make().listCareers({ incoming, requestId: 'explicit', apiKey: 'per-call-key' });
    const h = stub.requests[0].headers;
    assert.equal(h['x-request-id'], 'explicit');
    assert.equal(h.traceparent, '00-11111111111111111111111111111111-2222222222222222-01');
    assert.equal(h['x-api-key'], 'per-call-key');
  });

  test('a stream upload is sent chunked, in one attempt; buffers get a Content-Length', async () => {
    stub.script(fail(503, 'MODEL_LOADING', { 'retry-after': '0' }));
    const source = Readable.from([Buffer.from('abc'), Buffer.from('def')]);
    await assert.rejects(make().compareImages({ imageA: source, imageB: Buffer.from('xyz') }), (err) => err.status === 503 && err.retryable && err.attempts === 1);
    assert.equal(stub.requests.length, 1);
    let request = stub.requests[0];
    assert.equal(request.headers['transfer-encoding'], 'chunked');
    assert.equal(request.headers['content-length'], undefined);
    let body = request.body.toString();
    assert.match(body, /name="image_a"; filename="image_a"\r\nContent-Type: application\/octet-stream\r\n\r\nabcdef\r\n/);
    assert.match(body, /name="image_b"; filename="image_b"\r\n.*\r\n\r\nxyz\r\n/);

    stub.script(ok({}));
    await make().compareImages({ imageA: Buffer.from('abc'), imageB: new Blob(['xyz'], { type: 'image/png' }), tags: ['a "quoted"', 'b'] });
    request = stub.requests[0];
    assert.equal(Number(request.headers['content-length']), request.body.length);
    body = request.body.toString();
    assert.match(body, /Content-Type: image\/png\r\n\r\nxyz\r\n/);
    assert.equal(body.match(/name="tags"/g).length, 2);
  });

  test('base64 routes encode bytes and pass strings through', async () => {
    stub.script(ok({}));
    await make().compareImagesBase64({ imageA: Buffer.from('hello'), imageB: 'data:image/png;base64,aGk=' });
    await make().embedImagesBase64({ images: [new Blob(['hey']), Readable.from([Buffer.from('yo')])] });
    assert.deepEqual(JSON.parse(stub.requests[0].body), { image_a: 'aGVsbG8=', image_b: 'data:image/png;base64,aGk=' });
    assert.deepEqual(JSON.parse(stub.requests[1].body), { images: ['aGV5', 'eW8='] });
  });

  test('baseUrl may end in / or /api/v1', async () => {
    stub.script(ok({}));
    await new MlClient({ baseUrl: `${stub.url}/api/v1/` }).listCareers();
    assert.equal(stub.requests[0].url, '/api/v1/career/careers');
  });
});

test('parseRetryAfter reads seconds and HTTP dates', () => {
  assert.equal(parseRetryAfter('2'), 2_000);
  assert.equal(parseRetryAfter('1.5'), 1_500);
  assert.equal(parseRetryAfter(null), null);
  assert.equal(parseRetryAfter('soon'), null);
  const now = Date.parse('2026-01-01T00:00:00Z');
  assert.equal(parseRetryAfter('Thu, 01 Jan 2026 00:00:03 GMT', now), 3_000);
});

test('VERSION matches package.json', () => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  assert.equal(VERSION, pkg.version);
});
