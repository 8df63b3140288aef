"""The FastAPI example (examples/fastapi_app.py), served by uvicorn and driven by httpx: 202 at
once, then polling until the result."""

from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest
import uvicorn

from conftest import Stack, free_port
from references import linear

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fastapi_app.py"


@pytest.fixture(scope="module")
def example_url(stack: Stack, user_key: str) -> Iterator[str]:
    mp = pytest.MonkeyPatch()
    mp.setenv("INFERQ_URL", stack.url)
    mp.setenv("INFERQ_API_KEY", user_key)
    mp.setenv("INFERQ_EXAMPLE_MODEL", "linear")
    spec = importlib.util.spec_from_file_location("fastapi_app", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(module.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    mp.undo()


def test_the_example_answers_202_and_its_poll_gives_the_result(example_url: str) -> None:
    rows = [[1, 2, 3, 4], [0.5, -1, 0, 2]]
    with httpx.Client(base_url=example_url, timeout=10) as http:
        r = http.post("/predict", json={"features": rows})
        assert r.status_code == 202
        job_id = r.json()["job_id"]
        assert r.headers["location"] == f"/predict/{job_id}" == r.json()["status_url"]
        deadline = time.monotonic() + 30
        while True:
            poll = http.get(r.headers["location"])
            assert poll.status_code == 200
            body = poll.json()
            assert body["status"] in {"queued", "running", "succeeded"}
            if body["status"] == "succeeded":
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        np.testing.assert_allclose(body["result"]["y"], linear(np.array(rows, np.float32)), rtol=1e-6)
        assert http.get("/predict/00000000-0000-4000-8000-000000000000").status_code == 404
        bad = http.post("/predict", json={"features": [[1, 2, 3]]})
        assert bad.status_code == 422 and "shape_mismatch" in bad.text
