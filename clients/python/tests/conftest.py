"""The test harness: a real inferq stack per test session.

A private ``redis-server`` on a free port of 127.0.0.1, the ``inferq-api`` binary (keys required,
an admin key made here), a worker serving tests/models and a worker serving the speech pipeline
(models/silero_vad), all from the cargo target dir (``INFERQ_TARGET_DIR``, default
``<repo>/target/debug``; scripts/test.sh builds them). Every test run uses its own random
namespace. Processes are killed at the end. Their logs go to ``INFERQ_TEST_LOG_DIR`` when set
(run_tests.sh sets ``target/tmp/inferq-logs``, which scripts/test.sh searches for leaked secrets
afterwards: the admin key holds ``admin-key-`` and the webhook secret is the Rust suite's, so that
search recognises them), else to the session's temporary folder.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx
import pytest

import inferq

REPO = Path(__file__).resolve().parents[3]
TARGET = Path(os.environ.get("INFERQ_TARGET_DIR", REPO / "target" / "debug"))
ORT = Path(os.environ.get("ORT_DYLIB_PATH", REPO / ".ort" / "libonnxruntime.so.1.31.1"))
LOG_DIR = Path(os.environ["INFERQ_TEST_LOG_DIR"]) if os.environ.get("INFERQ_TEST_LOG_DIR") else None
WEBHOOK_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # 24 bytes, test only


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not listen on {port}")
            time.sleep(0.05)


@dataclass
class Stack:
    """The processes of one test session and what tests need to reach them."""

    tmp: Path
    redis_url: str
    namespace: str
    admin_key: str
    url: str = ""
    procs: list[subprocess.Popen] = field(default_factory=list)
    named: dict[str, subprocess.Popen] = field(default_factory=dict)

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, Path]:
        log = LOG_DIR / f"py-{self.namespace}-{name}.log" if LOG_DIR else self.tmp / f"{name}.log"
        full = {"PATH": os.environ.get("PATH", ""), "RUST_LOG": os.environ.get("TEST_WORKER_LOG", "warn"), **env}
        proc = subprocess.Popen(args, env=full, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc, log

    def api(self, name: str, port: int | None = None, **extra: str) -> str:
        """Starts an ``inferq-api`` (on ``port``, else a free one); returns its base URL."""
        port = port or free_port()
        env = {
            "INFERQ_BIND": f"127.0.0.1:{port}",
            "INFERQ_REDIS_URL": self.redis_url,
            "INFERQ_NAMESPACE": self.namespace,
            "INFERQ_AUTH": "required",
            "INFERQ_ADMIN_KEY": self.admin_key,
            "INFERQ_FETCH_ALLOW": "127.0.0.1",
            "INFERQ_REDIS_TIMEOUT_MS": "1000",
            # Debug for inferq's own crates: where a careless log line would show a request's details.
            "RUST_LOG": os.environ.get("TEST_API_LOG", "info,inferq_api=debug,inferq_shared=debug"),
            **extra,
        }
        proc, log = self.spawn(name, [str(TARGET / "inferq-api")], env)
        self.named[name] = proc
        wait_port(port, proc, name, log)
        return f"http://127.0.0.1:{port}"

    def worker(self, name: str, models_dir: Path, **extra: str) -> None:
        """Starts an ``inferq-worker``."""
        env = {
            "INFERQ_REDIS_URL": self.redis_url,
            "INFERQ_NAMESPACE": self.namespace,
            "INFERQ_MODELS_DIR": str(models_dir),
            "INFERQ_WORKER_ID": f"{name}-{uuid.uuid4().hex[:6]}",
            "INFERQ_THREADS": "2",
            "INFERQ_LEASE_MS": "2000",
            "ORT_DYLIB_PATH": str(ORT),
            **extra,
        }
        self.spawn(name, [str(TARGET / "inferq-worker")], env)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """Redis, the API, a worker for tests/models and a speech worker, for the whole session."""
    for binary in ("inferq-api", "inferq-worker"):
        if not (TARGET / binary).exists():
            pytest.exit(f"{TARGET / binary} is missing: cargo build --workspace --bins --all-features", 2)
    if shutil.which("redis-server") is None:
        pytest.exit("redis-server is missing (scripts/setup.sh installs it)", 2)
    tmp = Path(tempfile.mkdtemp(prefix="inferq-py-"))
    if LOG_DIR:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
    port = free_port()
    st = Stack(tmp, f"redis://127.0.0.1:{port}", f"py{uuid.uuid4().hex[:10]}", "py-admin-key-" + secrets.token_hex(24))
    redis, rlog = st.spawn(
        "redis",
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(tmp)],
        {},
    )
    try:
        wait_port(port, redis, "redis-server", rlog)
        st.url = st.api("api")
        # Every worker runs a webhook deliverer and may claim any delivery, so every worker
        # gets the signing key (one without it fails the attempts it claims).
        hooks = {
            "INFERQ_FETCH_ALLOW": "127.0.0.1",
            "INFERQ_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "INFERQ_WEBHOOK_BACKOFF_MS": "200",
        }
        st.worker("worker", REPO / "tests" / "models", **hooks)
        st.worker("speech", REPO / "models", INFERQ_MODELS="silero_vad", INFERQ_SPEECH_THREADS="1",
                  INFERQ_THREADS="1", **hooks)
        wanted = {"linear", "dtypes", "half", "strings", "mlp_small", "slow", "silero_vad"}
        deadline = time.monotonic() + 60
        with inferq.Client(st.url, st.admin_key) as admin:
            while True:
                live = {m["name"] for m in admin.models() if m.get("workers", 0) > 0}
                if wanted <= live:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"models never appeared: {wanted - live}; logs in {tmp}")
                time.sleep(0.1)
        yield st
    finally:
        st.stop()


@pytest.fixture(scope="session")
def admin(stack: Stack) -> Iterator[inferq.Client]:
    """A client with the admin key."""
    with inferq.Client(stack.url, stack.admin_key) as client:
        yield client


@pytest.fixture(scope="session")
def user_key(admin: inferq.Client) -> str:
    """A key of tenant ``team-a`` with the ``submit`` and ``read`` scopes."""
    return admin.create_key("team-a", ["submit", "read"], name="pytest")["key"]


@pytest.fixture(scope="session")
def client(stack: Stack, user_key: str) -> Iterator[inferq.Client]:
    """A synchronous client with an ordinary key."""
    with inferq.Client(stack.url, user_key) as c:
        yield c


@pytest.fixture
async def aclient(stack: Stack, user_key: str):
    """An async client with an ordinary key."""
    async with inferq.AsyncClient(stack.url, user_key) as c:
        yield c


def wait_until(predicate, timeout: float = 30.0, what: str = "condition"):
    """Polls ``predicate`` until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


__all__ = ["Stack", "REPO", "WEBHOOK_SECRET", "wait_until", "httpx"]
