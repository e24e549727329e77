#!/usr/bin/env bash
# Re-pin the Dockerfile's base image to the digest its tag points at now:
#   scripts/pin-base-image.sh [TAG]     (default: the tag already in the Dockerfile)
# Needs one of: skopeo, crane, docker buildx (each reads the registry, pulls nothing).
# Review the diff, rebuild, run the tests, commit: a base update is a change like any other.
set -euo pipefail
cd "$(dirname "$0")/.."
current=$(sed -n 's/^ARG PYTHON_IMAGE=//p' Dockerfile)
tag=${1:-${current%@*}}
if command -v skopeo >/dev/null; then
  digest=$(skopeo inspect --format '{{.Digest}}' "docker://$tag")
elif command -v crane >/dev/null; then
  digest=$(crane digest "$tag")
elif docker buildx version >/dev/null 2>&1; then
  digest=$(docker buildx imagetools inspect "$tag" --format '{{json .Manifest}}' | sed -n 's/.*"digest":"\([^"]*\)".*/\1/p')
else
  echo "needs skopeo, crane or docker buildx" >&2
  exit 1
fi
[[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || { echo "no digest for $tag: $digest" >&2; exit 1; }
sed -i "s|^ARG PYTHON_IMAGE=.*|ARG PYTHON_IMAGE=$tag@$digest|" Dockerfile
echo "Dockerfile: PYTHON_IMAGE=$tag@$digest"
