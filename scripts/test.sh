#!/usr/bin/env bash
# Runs every check: installs what is missing (scripts/setup.sh --test), then formatting, clippy with
# warnings as errors, the binaries the integration tests start, and all unit and integration
# tests (each integration test starts its own redis-server on a free port).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --test
echo "[test] cargo fmt --all --check"
cargo fmt --all --check
# --all-features turns on the worker's `test-hooks` (jobs that crash or panic a worker, for the
# crash-recovery tests); release builds lack it.
echo "[test] cargo clippy --workspace --all-targets --all-features -- -D warnings"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
echo "[test] cargo build --workspace --bins --all-features"
cargo build --workspace --bins --all-features --locked
echo "[test] scripts/check_docker.sh (static checks of Dockerfile and docker-compose.yml)"
scripts/check_docker.sh
echo "[test] scripts/check_kubernetes.py (render deploy/kubernetes, validate every object offline)"
.venv-test/bin/python scripts/check_kubernetes.py
echo "[test] scripts/container_test.py (compose on a Docker engine; skipped when none answers)"
scripts/container_test.py
echo "[test] cargo test --workspace --all-features"
# The processes the integration tests start log into target/tmp/inferq-logs; the last check
# searches all of it for secrets.
rm -rf target/tmp/inferq-logs
cargo test --workspace --all-features --locked
echo "[test] clients/python/run_tests.sh (the Python client against a real stack)"
clients/python/run_tests.sh
echo "[test] no secret in any log line the suite's processes wrote"
cargo test -p inferq-tests --all-features --locked --test it -- --ignored logs::
echo "[test] cargo test -p inferq-worker --lib (without test-hooks, as release builds are)"
cargo test -p inferq-worker --lib --locked
echo "[test] all checks passed"
