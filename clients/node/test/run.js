#!/usr/bin/env node
// `npm test`: start one ML service (unless ML_SERVICE_URL is set), run every test file
// against it with `node --test`, one file at a time (the registry tests switch the active
// model), then stop it.  `npm test -- test/clip.test.js` runs chosen files.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { PACKAGE_ROOT, startService } from './helpers/service.js';

const chosen = process.argv.slice(2);
const files = chosen.length
  ? chosen
  : readdirSync(path.join(PACKAGE_ROOT, 'test'))
      .filter((name) => name.endsWith('.test.js'))
      .sort()
      .map((name) => path.join('test', name));

let service = null;
const env = { ...process.env };
if (!env.ML_SERVICE_URL) {
  const started = Date.now();
  service = await startService();
  console.log(`# ML service ready at ${service.url} in ${((Date.now() - started) / 1000).toFixed(1)} s (log: ${service.logFile})`);
  Object.assign(env, { ML_SERVICE_URL: service.url, ML_API_KEY: service.apiKey, ML_ADMIN_API_KEY: service.adminKey });
} else {
  console.log(`# testing against ML_SERVICE_URL=${env.ML_SERVICE_URL}`);
}

const child = spawn(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=spec', ...files], { cwd: PACKAGE_ROOT, env, stdio: 'inherit' });
const stopAndExit = async (code) => {
  if (code !== 0 && service) {
    const log = readFileSync(service.logFile, 'utf8').split('\n').slice(-60).join('\n');
    console.error(`# last lines of the ML service log:\n${log}`);
  }
  await service?.stop();
  process.exit(code);
};
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    child.kill(signal);
  });
}
child.on('exit', (code, signal) => stopAndExit(code ?? (signal ? 1 : 0)));
