#!/usr/bin/env bash
# Run the whole test suite (lint, types, pytest) in the project's venv.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --dev
.venv/bin/ruff check app research tests benchmarks
.venv/bin/ruff format --check app research tests benchmarks
.venv/bin/mypy
# The Node.js gateway client's suite (clients/node), against a real server it starts: an
# integration suite, so `-m unit` (the fast unit tests only) leaves it out.
if [[ " $* " != *" -m unit "* ]]; then
  scripts/test_node_client.sh
fi
exec .venv/bin/python -m pytest "$@"
