// CLIP routes (multipart from Buffer, Blob and streams; base64 JSON twins) against the real
// service running the tiny CLIP fixture, which knows captions like "a red circle".
import assert from 'node:assert/strict';
import { createReadStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, test } from 'node:test';

import { MlClient, MlServiceError } from '../src/index.js';
import { shape } from './helpers/images.js';
import { useService } from './helpers/service.js';

const service = useService();
const client = () => new MlClient({ baseUrl: service.url, apiKey: service.apiKey, timeoutMs: 30_000 });

const RED_CIRCLE = shape({ color: 'red', kind: 'circle' });
const RED_CIRCLE_MOVED = shape({ color: 'red', kind: 'circle', cx: 0.45, cy: 0.55, scale: 0.55 });
const BLUE_SQUARE = shape({ color: 'blue', kind: 'square' });
const TAGS = ['a red circle', 'a blue square', 'a green triangle'];

const work = mkdtempSync(path.join(tmpdir(), 'ml-client-clip-'));
after(() => rmSync(work, { recursive: true, force: true }));

/** A Readable that yields the bytes in small chunks, slowly, like an upload in flight. */
function trickle(bytes, size = 97) {
  return Readable.from(
    (async function* () {
      for (let i = 0; i < bytes.length; i += size) {
        await new Promise((resolve) => setImmediate(resolve));
        yield bytes.subarray(i, i + size);
      }
    })(),
  );
}

function assertCompare(result) {
  assert.ok(result.similarity >= -1 && result.similarity <= 1);
  assert.ok(result.score >= 0 && result.score <= 100);
  assert.ok(['similar', 'related', 'different'].includes(result.verdict));
  assert.equal(result.model.name, 'tiny-clip');
}

describe('clip', () => {
  test('compare two Buffers (multipart)', async () => {
    const same = await client().compareImages({ imageA: RED_CIRCLE, imageB: RED_CIRCLE_MOVED });
    const other = await client().compareImages({ imageA: RED_CIRCLE, imageB: BLUE_SQUARE });
    assertCompare(same);
    assertCompare(other);
    assert.ok(same.similarity > other.similarity, `${same.similarity} <= ${other.similarity}`);
    assert.equal(same.tags_a, null);
  });

  test('compare Readable streams (streamed multipart body) with tags', async () => {
    const file = path.join(work, 'blue.png');
    writeFileSync(file, BLUE_SQUARE);
    const result = await client().compareImages(
      { imageA: trickle(RED_CIRCLE), imageB: { data: createReadStream(file, { highWaterMark: 128 }), filename: 'blue.png', contentType: 'image/png' }, tags: TAGS },
      { withMeta: true },
    );
    assertCompare(result.data);
    assert.equal(result.attempts, 1);
    assert.equal(result.data.tags_a.length, TAGS.length);
    const bestA = result.data.tags_a.reduce((a, b) => (b.similarity > a.similarity ? b : a));
    const bestB = result.data.tags_b.reduce((a, b) => (b.similarity > a.similarity ? b : a));
    assert.equal(bestA.tag, 'a red circle');
    assert.equal(bestB.tag, 'a blue square');
    // The streamed answer equals the buffered one.
    const buffered = await client().compareImages({ imageA: RED_CIRCLE, imageB: BLUE_SQUARE, tags: TAGS });
    assert.ok(Math.abs(buffered.similarity - result.data.similarity) < 1e-6);
  });

  test('compare a Blob and a web ReadableStream', async () => {
    const result = await client().compareImages({
      imageA: new Blob([RED_CIRCLE], { type: 'image/png' }),
      imageB: Readable.toWeb(Readable.from([RED_CIRCLE_MOVED])),
    });
    assertCompare(result);
  });

  test('compare base64 (JSON twin), plain and data URI', async () => {
    const result = await client().compareImagesBase64({
      imageA: RED_CIRCLE,
      imageB: `data:image/png;base64,${BLUE_SQUARE.toString('base64')}`,
      tags: ['a red circle'],
    });
    assertCompare(result);
    assert.equal(result.tags_a.length, 1);
    const multipart = await client().compareImages({ imageA: RED_CIRCLE, imageB: BLUE_SQUARE });
    assert.ok(Math.abs(multipart.similarity - result.similarity) < 1e-6);
  });

  test('match an image to tags (multipart and base64)', async () => {
    const multipart = await client().matchImage({ image: RED_CIRCLE, tags: TAGS });
    assert.equal(multipart.matches.length, TAGS.length);
    assert.equal(multipart.best.tag, 'a red circle');
    const commaSeparated = await client().matchImage({ image: trickle(BLUE_SQUARE), tags: 'a red circle,a blue square' });
    assert.equal(commaSeparated.best.tag, 'a blue square');
    const base64 = await client().matchImageBase64({ image: RED_CIRCLE.toString('base64'), tags: TAGS });
    assert.equal(base64.best.tag, 'a red circle');
    assert.ok(Math.abs(base64.best.similarity - multipart.best.similarity) < 1e-6);
  });

  test('image embeddings (multipart and base64)', async () => {
    const multipart = await client().embedImages({ images: [RED_CIRCLE, { data: trickle(BLUE_SQUARE), filename: 'square.png' }] });
    assert.equal(multipart.embeddings.length, 2);
    assert.equal(multipart.embeddings[1].name, 'square.png');
    const dim = multipart.model.dimension;
    for (const { embedding } of multipart.embeddings) {
      assert.equal(embedding.length, dim);
      const norm = Math.hypot(...embedding);
      assert.ok(Math.abs(norm - 1) < 1e-3, `norm ${norm}`);
    }
    const base64 = await client().embedImagesBase64({ images: [RED_CIRCLE] });
    assert.equal(base64.embeddings.length, 1);
    const a = base64.embeddings[0].embedding;
    const b = multipart.embeddings[0].embedding;
    assert.ok(a.every((v, i) => Math.abs(v - b[i]) < 1e-5));
  });

  test('text embeddings', async () => {
    const result = await client().embedTexts({ texts: ['a red circle', 'a blue square'] });
    assert.equal(result.embeddings.length, 2);
    assert.equal(result.embeddings[0].name, 'a red circle');
    assert.equal(result.embeddings[0].embedding.length, result.model.dimension);
  });

  test('an undecodable image is a typed 4xx error', async () => {
    await assert.rejects(client().compareImages({ imageA: Buffer.from('not an image'), imageB: RED_CIRCLE }), (err) => {
      assert.ok(err instanceof MlServiceError);
      assert.ok([400, 415].includes(err.status), String(err.status));
      assert.ok(['INVALID_IMAGE', 'UNSUPPORTED_MEDIA_TYPE'].includes(err.code), err.code);
      return true;
    });
    await assert.rejects(client().matchImageBase64({ image: '!!!not base64', tags: ['x'] }), (err) => err instanceof MlServiceError && err.status === 400);
  });

  test('a string image (a path, probably) is refused before any request', async () => {
    await assert.rejects(async () => client().compareImages({ imageA: '/tmp/a.png', imageB: RED_CIRCLE }), TypeError);
  });
});

describe('clip: early answers to a streamed upload', () => {
  test('a refused key with a large streamed body is UNAUTHORIZED, not a network error', async (t) => {
    if (!service.apiKey) return t.skip('the service under test has no API key');
    const big = Buffer.alloc(3 * 1024 * 1024, 7);
    const bad = new MlClient({ baseUrl: service.url, apiKey: 'wrong', timeoutMs: 20_000 });
    await assert.rejects(bad.compareImages({ imageA: trickle(big, 64 * 1024), imageB: trickle(big, 64 * 1024) }), (err) => {
      assert.equal(err.code, 'UNAUTHORIZED', `${err.code}: ${err.message}`);
      return true;
    });
  });

  test('a streamed body over the route limit is PAYLOAD_TOO_LARGE', async () => {
    const huge = Buffer.alloc(20 * 1024 * 1024, 1); // over the route's body limit (about 14 MB)
    await assert.rejects(client().matchImage({ image: trickle(huge, 256 * 1024), tags: ['x'] }), (err) => {
      assert.equal(err.code, 'PAYLOAD_TOO_LARGE', `${err.code}: ${err.message}`);
      assert.equal(err.status, 413);
      return true;
    });
  });
});
