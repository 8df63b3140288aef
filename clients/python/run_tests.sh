#!/usr/bin/env bash
# Runs the Python client's tests against a real inferq stack: makes (once) the virtualenv
# .venv-python at the repository root, installs this package with its pinned test extras, and
# runs pytest. The harness (tests/conftest.py) starts redis-server and the inferq-api and
# inferq-worker binaries from target/debug, which scripts/test.sh builds first
# (cargo build --workspace --bins --all-features). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
venv="$root/.venv-python"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || {
    echo "run_tests.sh: python3 -m venv failed; install python3-venv (scripts/setup.sh does)" >&2
    rm -rf "$venv"
    exit 1
  }
fi
# The package itself is reinstalled every run (cheap), so the tests see the current sources.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "./clients/python[test]"

export INFERQ_TARGET_DIR="${INFERQ_TARGET_DIR:-$root/target/debug}"
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$root/.ort/libonnxruntime.so.1.31.1}"
# scripts/test.sh searches this folder for leaked secrets after the suite.
export INFERQ_TEST_LOG_DIR="${INFERQ_TEST_LOG_DIR:-$root/target/tmp/inferq-logs}"
cd clients/python
exec "$venv/bin/python" -m pytest -p no:cacheprovider "$@"
