#!/usr/bin/env bash
# The Node.js client (clients/node) and its gateway example: install their pinned npm
# dependencies (npm ci, from the committed lock files) and run the client's tests, which
# start the service from .venv with the tiny CLIP fixture (or use ML_SERVICE_URL if set).
# Idempotent; needs Node.js >= 20 and npm. SKIP_NODE_CLIENT_TESTS=1 skips it.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${SKIP_NODE_CLIENT_TESTS:-}" == 1 ]]; then
  echo "node client tests skipped (SKIP_NODE_CLIENT_TESTS=1)" >&2
  exit 0
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "node client tests need Node.js >= 20 and npm (or set SKIP_NODE_CLIENT_TESTS=1)" >&2
  exit 1
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if (( major < 20 )); then
  echo "node client tests need Node.js >= 20, found $(node --version)" >&2
  exit 1
fi
if [[ -z "${ML_SERVICE_URL:-}" && ! -x .venv/bin/python ]]; then
  scripts/bootstrap.sh  # the service's runtime requirements; scripts/test.sh builds .venv first
fi

npm_ci() { (cd "$1" && npm ci --no-audit --no-fund --loglevel=error); }
npm_ci clients/node
npm_ci clients/node/examples/gateway
cd clients/node
exec npm test --silent
