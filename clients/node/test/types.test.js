// The committed TypeScript types are generated from the service's current OpenAPI document,
// the client covers every operation outside the OpenAI-compatible /v1 (the `openai` package
// calls those), and index.d.ts compiles against them.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';

import { ROUTES } from '../src/index.js';
import { DEFAULT_OUT, PACKAGE_ROOT, PYTHON, generate } from '../scripts/generate-types.js';

const run = promisify(execFile);
const work = mkdtempSync(path.join(tmpdir(), 'ml-client-types-'));
const fresh = path.join(work, 'openapi.d.ts');
const specFile = path.join(work, 'openapi.json');
const havePython = existsSync(PYTHON);

describe('generated types', { skip: havePython ? false : `${PYTHON} not found` }, () => {
  before(() => generate({ out: fresh, specOut: specFile }), { timeout: 120_000 });
  after(() => rmSync(work, { recursive: true, force: true }));

  test('types/openapi.d.ts is up to date', () => {
    const committed = readFileSync(DEFAULT_OUT, 'utf8');
    const regenerated = readFileSync(fresh, 'utf8');
    assert.ok(committed === regenerated, 'types are out of date; run npm run generate (in clients/node)');
  });

  test('every /api/v1 operation of the OpenAPI document has a client method', () => {
    const spec = JSON.parse(readFileSync(specFile, 'utf8'));
    const covered = new Set(Object.values(ROUTES).map((r) => `${r.method} ${r.path}`));
    const missing = [];
    for (const [route, operations] of Object.entries(spec.paths)) {
      // OpenAI's wire format (/v1): called with the `openai` package (test/openai.test.js).
      if (route.startsWith('/v1/')) continue;
      for (const method of Object.keys(operations)) {
        const key = `${method.toUpperCase()} ${route}`;
        if (!covered.has(key)) missing.push(key);
      }
    }
    assert.deepEqual(missing, [], `routes without a client method: ${missing.join(', ')}`);
    const documented = new Set(Object.entries(spec.paths).flatMap(([route, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${route}`)));
    const stale = [...covered].filter((key) => !documented.has(key));
    assert.deepEqual(stale, [], `client methods for routes the service no longer has: ${stale.join(', ')}`);
  });

  test('the multipart/base64 twins exist where the service offers them', () => {
    const spec = JSON.parse(readFileSync(specFile, 'utf8'));
    const content = (route) => Object.keys(spec.paths[route].post.requestBody.content);
    assert.deepEqual(content(ROUTES.compareImages.path), ['multipart/form-data']);
    assert.deepEqual(content(ROUTES.compareImagesBase64.path), ['application/json']);
    assert.deepEqual(content(ROUTES.retrainFromCsv.path).sort(), ['application/json', 'multipart/form-data']);
  });
});

test('index.d.ts compiles against the generated types (tsc)', { timeout: 120_000 }, async () => {
  const require = createRequire(import.meta.url);
  const tsc = path.join(path.dirname(require.resolve('typescript/package.json')), 'bin', 'tsc');
  try {
    await run(process.execPath, [tsc, '-p', path.join(PACKAGE_ROOT, 'test', 'types', 'tsconfig.json')], { cwd: PACKAGE_ROOT });
  } catch (err) {
    assert.fail(`tsc failed:\n${err.stdout}${err.stderr}`);
  }
});
