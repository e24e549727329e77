#!/usr/bin/env node
/**
 * Regenerate types/openapi.d.ts from the service's own OpenAPI document:
 *   1. the Python app writes create_app().openapi() to a temporary JSON file;
 *   2. openapi-typescript (devDependency, pinned) turns it into TypeScript.
 *
 *   npm run generate                      # rewrites types/openapi.d.ts
 *   node scripts/generate-types.js --out /tmp/x.d.ts [--spec-out /tmp/openapi.json]
 *
 * The Python interpreter is ML_PYTHON, else <repo>/.venv/bin/python; it runs in the repo root.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const PACKAGE_ROOT = path.resolve(here, '..');
export const REPO_ROOT = path.resolve(PACKAGE_ROOT, '..', '..');
export const DEFAULT_OUT = path.join(PACKAGE_ROOT, 'types', 'openapi.d.ts');
export const PYTHON = process.env.ML_PYTHON || path.join(REPO_ROOT, '.venv', 'bin', 'python');

// The document does not depend on settings; a clean environment keeps a developer's
// exported variables (and a broken value among them) out of it. .env is not read either.
const DUMP_SPEC = `
import json, sys
from app.config import Settings
from app.main import create_app
spec = create_app(Settings(_env_file=None)).openapi()
with open(sys.argv[1], "w", encoding="utf-8") as out:
    json.dump(spec, out, indent=2, ensure_ascii=False)
    out.write("\\n")
`;

/** Write the service's OpenAPI document to `file`. */
export function dumpOpenApi(file) {
  const env = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LANG: 'C.UTF-8', PYTHONDONTWRITEBYTECODE: '1' };
  execFileSync(PYTHON, ['-c', DUMP_SPEC, file], { cwd: REPO_ROOT, env, stdio: ['ignore', 'ignore', 'inherit'] });
}

/** Run openapi-typescript on `specFile`, writing `outFile`. */
export function openapiTypescript(specFile, outFile) {
  const require = createRequire(import.meta.url);
  const cli = path.join(path.dirname(require.resolve('openapi-typescript/package.json')), 'bin', 'cli.js');
  // --default-non-nullable=false: a field with a default stays optional in request bodies.
  execFileSync(process.execPath, [cli, specFile, '--output', outFile, '--default-non-nullable=false'], {
    cwd: PACKAGE_ROOT,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

export function generate({ out = DEFAULT_OUT, specOut } = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'ml-openapi-'));
  try {
    const spec = path.join(dir, 'openapi.json');
    dumpOpenApi(spec);
    openapiTypescript(spec, out);
    if (specOut) copyFileSync(spec, specOut);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const opt = (name) => {
    const i = args.indexOf(name);
    return i >= 0 ? path.resolve(args[i + 1]) : undefined;
  };
  const out = generate({ out: opt('--out'), specOut: opt('--spec-out') });
  console.log(`wrote ${path.relative(process.cwd(), out) || out}`);
}
