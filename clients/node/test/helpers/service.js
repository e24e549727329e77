// The real ML service for the tests: ML_SERVICE_URL when set, else a private one started here
// (`.venv/bin/python -m uvicorn app.main:app`) with the tiny CLIP fixture and a copy of the
// fixture career model, configured like tests/conftest.py and benchmarks/soak.py do.
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, existsSync, openSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before } from 'node:test';

const here = path.dirname(fileURLToPath(import.meta.url));
export const PACKAGE_ROOT = path.resolve(here, '..', '..');
export const REPO_ROOT = path.resolve(PACKAGE_ROOT, '..', '..');
export const PYTHON = process.env.ML_PYTHON || path.join(REPO_ROOT, '.venv', 'bin', 'python');
const FIXTURES = path.join(REPO_ROOT, 'tests', 'fixtures');

export const API_KEY = 'node-client-test-key';
export const ADMIN_KEY = 'node-client-test-admin-key';

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Start the service; resolves once /health/ready answers 200. */
export async function startService({ readyTimeoutMs = 120_000 } = {}) {
  if (!existsSync(PYTHON)) {
    throw new Error(`${PYTHON} not found: build the venv first (scripts/bootstrap.sh --dev) or set ML_SERVICE_URL`);
  }
  const work = mkdtempSync(path.join(tmpdir(), 'ml-client-test-'));
  const models = path.join(work, 'career_models');
  cpSync(path.join(FIXTURES, 'career_models'), models, { recursive: true });
  const port = await freePort();
  const logFile = path.join(work, 'server.log');
  const log = openSync(logFile, 'a');
  const env = {
    ...process.env,
    FASTAPI_HOST: '127.0.0.1',
    FASTAPI_PORT: String(port),
    WORKERS: '1',
    CAREER_MODEL_DIR: models,
    UPLOAD_DIR: path.join(work, 'uploads'),
    CLIP_MODEL_CACHE_DIR: path.join(work, 'clip-cache'),
    CLIP_ENABLED: 'true',
    CLIP_MODEL_NAME: 'tiny-clip',
    CLIP_PRETRAINED: path.join(FIXTURES, 'clip', 'tiny-clip.pt'),
    CLIP_MODEL_CONFIG: path.join(FIXTURES, 'clip', 'tiny-clip.json'),
    CLIP_DEVICE: 'cpu',
    CLIP_BACKEND: 'torch',
    CLIP_PRECISION: 'fp32',
    TORCH_THREADS: '1',
    API_KEYS: API_KEY,
    ADMIN_API_KEYS: ADMIN_KEY,
    MODEL_POLL_SECONDS: '0.5',
    LOG_FORMAT: 'json',
    DEBUG: 'false',
    PYTHONDONTWRITEBYTECODE: '1',
  };
  const child = spawn(PYTHON, ['-m', 'uvicorn', 'app.main:app', '--host', '127.0.0.1', '--port', String(port), '--no-access-log'], {
    cwd: REPO_ROOT,
    env,
    stdio: ['ignore', log, log],
  });
  let exited = null;
  child.on('exit', (code, signal) => {
    exited = { code, signal };
  });
  const killNow = () => {
    if (exited === null) child.kill('SIGKILL');
  };
  process.on('exit', killNow);

  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    process.off('exit', killNow);
    if (exited === null) {
      child.kill('SIGTERM');
      for (let i = 0; i < 100 && exited === null; i++) await sleep(100);
      if (exited === null) child.kill('SIGKILL');
    }
    rmSync(work, { recursive: true, force: true });
  };
  const tail = () => readFileSync(logFile, 'utf8').split('\n').slice(-40).join('\n');

  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    if (exited !== null) {
      const text = tail();
      await stop();
      throw new Error(`the ML service exited (${JSON.stringify(exited)}) before it was ready:\n${text}`);
    }
    try {
      const response = await fetch(`${url}/health/ready`, { signal: AbortSignal.timeout(2_000) });
      await response.arrayBuffer();
      if (response.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      const text = tail();
      await stop();
      throw new Error(`the ML service was not ready after ${readyTimeoutMs} ms:\n${text}`);
    }
    await sleep(150);
  }
  return { url, apiKey: API_KEY, adminKey: ADMIN_KEY, owned: true, stop, logFile };
}

/** The service to test against: from the environment, else started (and stopped) here. */
export async function attachOrStart() {
  if (process.env.ML_SERVICE_URL) {
    return {
      url: process.env.ML_SERVICE_URL,
      apiKey: process.env.ML_API_KEY || undefined,
      adminKey: process.env.ML_ADMIN_API_KEY || undefined,
      owned: false,
      stop: async () => {},
    };
  }
  return startService();
}

/**
 * Register before/after hooks for a test file; the returned object is filled in `before`.
 * `npm test` starts one service for every file (test/run.js) and passes it as ML_SERVICE_URL;
 * `node --test test/x.test.js` alone starts its own.
 */
export function useService() {
  const service = {};
  before(async () => Object.assign(service, await attachOrStart()), { timeout: 180_000 });
  after(async () => service.stop?.());
  return service;
}
