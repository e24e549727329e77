#!/usr/bin/env bash
# Create or update .venv so it matches requirements (dev tools too with --dev).
# Re-installs only when the requirement files change (their hash is kept in the venv).
set -euo pipefail
cd "$(dirname "$0")/.."

reqs=requirements.txt
[[ "${1:-}" == "--dev" ]] && reqs=requirements-dev.txt
python=${PYTHON:-$(command -v python3.11 || command -v python3)}
stamp=.venv/.installed-$(basename "$reqs" .txt)
wanted=$(cat requirements*.txt "$reqs" | sha256sum | cut -d' ' -f1)

if [[ ! -x .venv/bin/python ]]; then
  echo "creating .venv with $("$python" --version)" >&2
  "$python" -m venv .venv
fi
if [[ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]]; then
  echo "installing $reqs into .venv (first time: several minutes, torch is large)" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$reqs"
  echo "$wanted" > "$stamp"
fi
