// The Express example (examples/gateway) end to end: a browser-style multipart upload to the
// gateway, streamed through the client to a scripted stub (to see what arrives) and to the
// real service. Skipped when the example's dependencies are not installed.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { shape } from './helpers/images.js';
import { PACKAGE_ROOT, freePort, useService } from './helpers/service.js';
import { ok, startStub } from './helpers/stub.js';

const EXAMPLE = path.join(PACKAGE_ROOT, 'examples', 'gateway');
const installed = existsSync(path.join(EXAMPLE, 'node_modules', 'express')) && existsSync(path.join(EXAMPLE, 'node_modules', 'busboy'));
const skip = installed ? false : 'examples/gateway dependencies not installed (run: cd clients/node/examples/gateway && npm ci)';

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const RED = shape({ color: 'red', kind: 'circle' });
const BLUE = shape({ color: 'blue', kind: 'square' });

/** Start `node server.js` on a free port; resolves once /healthz answers. */
async function startGateway(env) {
  const port = await freePort();
  const child = spawn(process.execPath, ['server.js'], { cwd: EXAMPLE, env: { ...process.env, ...env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`gateway exited: ${output}`);
    try {
      const response = await fetch(`${url}/healthz`);
      if (response.ok) break;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  return {
    url,
    output: () => output,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', resolve);
        child.kill('SIGTERM');
      }),
  };
}

function upload({ files = [RED, BLUE], tags } = {}) {
  const form = new FormData();
  if (tags) form.append('tags', tags);
  files.forEach((bytes, i) => form.append(i === 0 ? 'image_a' : 'image_b', new Blob([bytes], { type: 'image/png' }), `img${i}.png`));
  return form;
}

describe('gateway example', { skip }, () => {
  const service = useService();

  describe('against a stub', () => {
    let stub;
    let gateway;
    before(async () => {
      stub = await startStub();
      gateway = await startGateway({ ML_SERVICE_URL: stub.url, ML_API_KEY: 'gw-key' });
    });
    after(async () => {
      await gateway?.stop();
      await stub?.close();
    });

    test('streams both files upstream with the key, request id and traceparent', async () => {
      stub.script(ok({ similarity: 0.5 }));
      const response = await fetch(`${gateway.url}/compare?tags=x`, {
        method: 'POST',
        body: upload({ tags: 'a red circle' }),
        headers: { 'X-Request-ID': 'browser-req-1', traceparent: TRACEPARENT },
      });
      const body = await response.json();
      assert.equal(response.status, 200, JSON.stringify(body));
      assert.equal(response.headers.get('x-request-id'), 'browser-req-1');
      assert.deepEqual(body.data, { similarity: 0.5 });
      const [request] = stub.requests;
      assert.equal(request.url, '/api/v1/clip/compare');
      assert.equal(request.headers['x-api-key'], 'gw-key');
      assert.equal(request.headers['x-request-id'], 'browser-req-1');
      assert.equal(request.headers.traceparent, TRACEPARENT);
      assert.equal(request.headers['transfer-encoding'], 'chunked', 'forwarded as a stream');
      const raw = request.body;
      assert.ok(raw.includes(RED) && raw.includes(BLUE), 'both images arrive byte for byte');
      assert.ok(raw.indexOf(RED) < raw.indexOf(BLUE));
      const text = raw.toString('latin1');
      assert.match(text, /name="image_a"; filename="img0.png"\r\nContent-Type: image\/png/);
      assert.equal(text.match(/name="tags"/g).length, 2); // ?tags=x and the form field
    });

    test('one file is a 400; a non-multipart body is a 415', async () => {
      stub.script(ok({}));
      const one = await fetch(`${gateway.url}/compare`, { method: 'POST', body: upload({ files: [RED] }) });
      assert.equal(one.status, 400);
      assert.equal((await one.json()).error.code, 'MISSING_FILES');
      const json = await fetch(`${gateway.url}/compare`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
      assert.equal(json.status, 415);
    });
  });

  describe('against the real service', () => {
    let gateway;
    before(async () => {
      gateway = await startGateway({ ML_SERVICE_URL: service.url, ML_API_KEY: service.apiKey ?? '' });
    });
    after(() => gateway?.stop());

    test('compare through the gateway', async () => {
      const response = await fetch(`${gateway.url}/compare`, {
        method: 'POST',
        body: upload({ tags: 'a red circle,a blue square' }),
        headers: { 'X-Request-ID': 'e2e-gateway-1', traceparent: TRACEPARENT },
      });
      const body = await response.json();
      assert.equal(response.status, 200, JSON.stringify(body));
      assert.equal(body.meta.request_id, 'e2e-gateway-1', 'the service saw the browser request id');
      assert.ok(['similar', 'related', 'different'].includes(body.data.verdict));
      assert.equal(body.data.tags_a.length, 2);
    });

    test("the service's errors come back with their status and code", async () => {
      const response = await fetch(`${gateway.url}/compare`, { method: 'POST', body: upload({ files: [Buffer.from('not an image'), BLUE] }) });
      const body = await response.json();
      assert.ok([400, 415].includes(response.status), `${response.status} ${JSON.stringify(body)}`);
      assert.equal(body.success, false);
      assert.ok(body.error.code);
    });
  });
});
