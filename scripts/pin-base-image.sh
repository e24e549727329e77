#!/usr/bin/env bash
# Re-pin the base image to the digest its tag points at now:
#   scripts/pin-base-image.sh
# The Dockerfile names the tag (FROM python:3.11-slim-bookworm); the release builds
# (docker-bake.hcl and deploy/docker-compose.yml) replace it with a named build context
# pinned by digest. This rewrites that digest in both.
# Needs one of: skopeo, crane, docker buildx (each reads the registry, pulls nothing).
# Review the diff, rebuild, run the tests, commit: a base update is a change like any other.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=$(sed -n 's/^FROM[[:space:]]\+\([^[:space:]]*\)[[:space:]]\+AS python$/\1/p' Dockerfile)
[[ -n "$tag" ]] || { echo "no 'FROM <tag> AS python' line in the Dockerfile" >&2; exit 1; }
ref=docker.io/library/$tag
if command -v skopeo >/dev/null; then
  digest=$(skopeo inspect --format '{{.Digest}}' "docker://$ref")
elif command -v crane >/dev/null; then
  digest=$(crane digest "$ref")
elif docker buildx version >/dev/null 2>&1; then
  digest=$(docker buildx imagetools inspect "$ref" --format '{{json .Manifest}}' | sed -n 's/.*"digest":"\([^"]*\)".*/\1/p')
else
  echo "needs skopeo, crane or docker buildx" >&2
  exit 1
fi
[[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || { echo "no digest for $ref: $digest" >&2; exit 1; }
pinned="docker-image://$ref@$digest"
sed -i "s|docker-image://$ref@sha256:[0-9a-f]\{64\}|$pinned|" docker-bake.hcl deploy/docker-compose.yml
grep -c "$pinned" docker-bake.hcl deploy/docker-compose.yml
echo "pinned $tag to $digest"
