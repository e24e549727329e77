#!/usr/bin/env bash
# Run the whole test suite (lint, types, pytest) in the project's venv.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --dev
.venv/bin/ruff check app research tests benchmarks
.venv/bin/ruff format --check app research tests benchmarks
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
