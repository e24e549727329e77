// The OpenAI-compatible routes (/v1) through the official `openai` npm package, as a gateway
// that already speaks OpenAI's API would call them: texts and an image, against the real
// service running the tiny CLIP fixture. The vectors equal those of the native routes,
// fetched with this package's own MlClient.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import OpenAI from 'openai';

import { MlClient } from '../src/index.js';
import { shape } from './helpers/images.js';
import { useService } from './helpers/service.js';

const service = useService();
const openai = (apiKey = service.apiKey ?? 'no-key-configured') =>
  new OpenAI({ baseURL: `${service.url}/v1`, apiKey, maxRetries: 0, timeout: 30_000 });
const native = () => new MlClient({ baseUrl: service.url, apiKey: service.apiKey, timeoutMs: 30_000 });

const TAGS = ['a red circle', 'a blue square', 'a green triangle'];
const RED_CIRCLE = shape({ color: 'red', kind: 'circle' });
const BLUE_SQUARE = shape({ color: 'blue', kind: 'square' });
const dataUri = (png) => `data:image/png;base64,${png.toString('base64')}`;

/** Equal once both are float32, the service's own precision. */
function assertSameVectors(got, expected) {
  assert.equal(got.length, expected.length);
  got.forEach((vector, i) => {
    assert.deepEqual(Array.from(Float32Array.from(vector)), Array.from(Float32Array.from(expected[i])));
  });
}

const cosine = (a, b) => a.reduce((sum, x, i) => sum + x * b[i], 0);

describe('openai package against /v1', () => {
  let model;

  test('models.list names the served model', async () => {
    const models = [];
    for await (const card of openai().models.list()) models.push(card);
    assert.equal(models.length, 1);
    model = models[0].id;
    const { model: ref } = await native().embedTexts({ texts: ['x'] });
    assert.equal(model, `${ref.name}/${ref.pretrained}`);
    assert.equal(models[0].object, 'model');
  });

  test('texts: the default (base64 on the wire, decoded by the client) and float', async () => {
    const expected = (await native().embedTexts({ texts: TAGS })).embeddings.map((e) => e.embedding);
    const decoded = await openai().embeddings.create({ model, input: TAGS });
    assert.equal(decoded.object, 'list');
    assert.equal(decoded.model, model);
    assert.deepEqual(decoded.data.map((d) => d.index), [0, 1, 2]);
    assert.deepEqual(decoded.usage, { prompt_tokens: 9, total_tokens: 9 });
    assertSameVectors(decoded.data.map((d) => d.embedding), expected);
    const floats = await openai().embeddings.create({ model, input: TAGS, encoding_format: 'float' });
    assert.ok(Array.isArray(floats.data[0].embedding));
    assertSameVectors(floats.data.map((d) => d.embedding), expected);
  });

  test('explicit base64 is little-endian float32', async () => {
    const result = await openai().embeddings.create({ model, input: 'a red circle', encoding_format: 'base64' });
    const bytes = Buffer.from(result.data[0].embedding, 'base64');
    const vector = Array.from({ length: bytes.length / 4 }, (_, i) => bytes.readFloatLE(4 * i));
    const expected = (await native().embedTexts({ texts: ['a red circle'] })).embeddings[0].embedding;
    assertSameVectors([vector], [expected]);
  });

  test('an image as a data URI, with modality sent as an extra body field', async () => {
    const result = await openai().embeddings.create({ model, input: [dataUri(RED_CIRCLE), BLUE_SQUARE.toString('base64')], modality: 'image' });
    assert.deepEqual(result.usage, { prompt_tokens: 0, total_tokens: 0 });
    const expected = (await native().embedImages({ images: [RED_CIRCLE, BLUE_SQUARE] })).embeddings.map((e) => e.embedding);
    assertSameVectors(result.data.map((d) => d.embedding), expected);
    // Zero-shot through the compatible route alone: the red circle is nearest its caption.
    const captions = await openai().embeddings.create({ model, input: TAGS });
    const image = result.data[0].embedding;
    const scores = captions.data.map((d) => cosine(d.embedding, image));
    assert.equal(scores.indexOf(Math.max(...scores)), 0, `scores ${scores}`);
  });

  test('errors arrive as the package\'s own error classes, with our code', async () => {
    await assert.rejects(openai().embeddings.create({ model: 'text-embedding-3-small', input: 'x' }), (err) => {
      assert.ok(err instanceof OpenAI.NotFoundError, String(err));
      assert.equal(err.status, 404);
      assert.equal(err.code, 'NOT_FOUND');
      assert.equal(err.param, 'model');
      return true;
    });
    await assert.rejects(openai().embeddings.create({ model, input: ['https://example.com/a.png'], modality: 'image' }), (err) => {
      assert.ok(err instanceof OpenAI.UnprocessableEntityError, String(err));
      assert.match(err.message, /never fetches/);
      return true;
    });
    if (service.apiKey) {
      await assert.rejects(openai('sk-wrong').embeddings.create({ model, input: 'x' }), (err) => {
        assert.ok(err instanceof OpenAI.AuthenticationError, String(err));
        assert.equal(err.code, 'UNAUTHORIZED');
        assert.equal(err.type, 'authentication_error');
        return true;
      });
    }
  });
});
