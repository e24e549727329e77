# The release build: `REGISTRY=registry.example.com/ TAG=1.0.0 docker buildx bake serve torch`.
# It pins the Dockerfile's base image by digest with a named build context, which replaces
# `FROM python:3.11-slim-bookworm`: a moved tag cannot slip in. scripts/pin-base-image.sh
# rewrites the digest (here and in deploy/docker-compose.yml); review, rebuild, test, commit.

variable "REGISTRY" {
  default = "" # e.g. "registry.example.com/" (with the slash)
}

variable "TAG" {
  default = "1.0.0"
}

variable "PYTHON_BASE" {
  default = "docker-image://docker.io/library/python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b"
}

group "default" {
  targets = ["serve"]
}

target "_common" {
  context    = "."
  dockerfile = "Dockerfile"
  contexts = {
    "python:3.11-slim-bookworm" = PYTHON_BASE
  }
}

target "serve" {
  inherits = ["_common"]
  target   = "serve"
  tags     = ["${REGISTRY}skill-compass-ml:${TAG}"]
}

target "torch" {
  inherits = ["_common"]
  target   = "torch"
  tags     = ["${REGISTRY}skill-compass-ml-torch:${TAG}"]
}
