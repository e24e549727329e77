#!/usr/bin/env bash
# Start the service: venv, default career model if none is active, then `python -m app`.
# Settings come from the environment or .env (see .env.example).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/python -m app.train --if-missing
exec .venv/bin/python -m app "$@"
