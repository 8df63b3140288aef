#!/usr/bin/env bash
# Runs every check: installs what is missing (scripts/setup.sh), then formatting, clippy with
# warnings as errors, the binaries the integration tests start, and all unit and integration
# tests (each integration test starts its own redis-server on a free port).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
echo "[test] cargo fmt --all --check"
cargo fmt --all --check
echo "[test] cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "[test] cargo build --workspace --bins"
cargo build --workspace --bins --locked
echo "[test] scripts/check_docker.sh (static checks of Dockerfile and docker-compose.yml)"
scripts/check_docker.sh
echo "[test] cargo test --workspace"
cargo test --workspace --locked
echo "[test] all checks passed"
