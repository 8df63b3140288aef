"""The synchronous client against the real stack: submit, result, status, batches, events, cancel."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

import inferq
from references import linear, mlp_small


def test_mlp_small_result_matches_the_numpy_reference(client: inferq.Client) -> None:
    x = np.random.default_rng(7).standard_normal((3, 64)).astype(np.float32)
    job = client.submit("mlp_small", {"x": x}, priority=7, timeout=30)
    assert job.status() in {"queued", "running", "succeeded"}
    out = job.result(timeout=60)
    assert set(out) == {"logits"}
    assert out["logits"].dtype == np.float32 and out["logits"].shape == (3, 10)
    np.testing.assert_allclose(out["logits"], mlp_small(x), rtol=1e-4, atol=1e-5)
    assert job.status() == "succeeded"
    record = job.record()
    assert record["priority"] == 7 and record["attempts"] == 1


def test_json_and_binary_framing_give_the_same_numbers(client: inferq.Client) -> None:
    x = np.array([[1, 2, 3, 4], [-1.5, 0.25, 8, 1e-3]], np.float32)
    binary = client.submit("linear", {"x": x}).result(timeout=60)["y"]
    plain = client.submit("linear", {"x": x}, binary=False).result(timeout=60)["y"]
    np.testing.assert_allclose(binary, linear(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(binary, plain)


def test_an_idempotency_key_answers_with_the_first_job(client: inferq.Client) -> None:
    key = f"order-{uuid.uuid4().hex}"
    x = np.ones((1, 4), np.float32)
    first = client.submit("linear", {"x": x}, idempotency_key=key)
    again = client.submit("linear", {"x": x}, idempotency_key=key)
    assert again.id == first.id and again.replayed and not first.replayed
    with pytest.raises(inferq.ValidationError) as e:
        client.submit("linear", {"x": x * 2}, idempotency_key=key)
    assert e.value.code == "idempotency_key_reused"


def test_submit_many_returns_jobs_and_the_refusals_in_order(client: inferq.Client) -> None:
    rows = [np.full((1, 4), i, np.float32) for i in range(3)]
    items = [{"x": r} for r in rows] + [{"x": np.ones((1, 3), np.float32)}]
    jobs = client.submit_many("linear", items)
    assert len(jobs) == 4
    assert isinstance(jobs[3], inferq.ValidationError) and jobs[3].code == "shape_mismatch"
    for row, job in zip(rows, jobs[:3]):
        assert isinstance(job, inferq.Job)
        np.testing.assert_allclose(job.result(timeout=60)["y"], linear(row), rtol=1e-6)


def test_outputs_selects_outputs(client: inferq.Client) -> None:
    x = {"f64": np.zeros((1, 2)), "i32": np.zeros((1, 2), np.int32), "i64s": np.array(1, np.int64),
         "flag": np.zeros((1, 2), bool)}
    out = client.submit("dtypes", x, outputs=["i64_out"]).result(timeout=60)
    assert list(out) == ["i64_out"] and out["i64_out"] == 3


def test_events_follow_a_job_to_its_end(client: inferq.Client) -> None:
    job = client.submit("slow", {"x": np.array([[1.0]], np.float32)})
    events = list(job.events())
    assert events[-1].status == "succeeded" and events[-1].final
    assert all(e.event == "status" for e in events)
    ids = [e.id for e in events]
    assert ids == sorted(set(ids))
    assert events[0].data["id"] == job.id
    result = events[-1].data["result"]["outputs"][0]
    assert result["name"] == "y" and result["data"] == [2.0]
    # Resuming after the final event yields nothing more.
    assert list(job.events(last_event_id=events[-1].id)) == []


def test_cancel_ends_a_job_and_its_result_raises(client: inferq.Client) -> None:
    # Fill both inference threads so the last job is still waiting when it is cancelled.
    busy = [client.submit("slow", {"x": np.array([[0.0]], np.float32)}) for _ in range(3)]
    job = client.submit("slow", {"x": np.array([[5.0]], np.float32)})
    record = job.cancel()
    assert record["status"] == "cancelled"
    with pytest.raises(inferq.JobCancelled) as e:
        job.result(timeout=10)
    assert e.value.job_id == job.id
    with pytest.raises(inferq.Conflict) as c:
        job.cancel()
    assert c.value.code == "job_finished" and c.value.status == 409
    for b in busy:
        b.result(timeout=60)


def test_result_times_out_without_losing_the_job(client: inferq.Client) -> None:
    job = client.submit("slow", {"x": np.array([[3.0]], np.float32)})
    with pytest.raises(inferq.JobTimeout) as e:
        job.result(timeout=0.05)
    assert isinstance(e.value, TimeoutError)
    assert job.result(timeout=60)["y"].tolist() == [[4.0]]


def test_listing_models_queues_and_jobs(client: inferq.Client, admin: inferq.Client) -> None:
    models = {m["name"]: m for m in client.models()}
    assert models["linear"]["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert models["linear"]["workers"] >= 1
    job = client.submit("linear", {"x": np.ones((1, 4), np.float32)})
    job.result(timeout=60)
    assert job.id in {r["id"] for r in client.jobs(model="linear", limit=2)}
    queues = admin.queues()["queues"]
    assert queues["linear"]["completed_last_minute"] >= 1
    # The speech worker serves silero_vad, so its pipeline is a queue too.
    assert "pipeline:speech_segments" in queues
    scaling = admin.scaling()
    assert set(scaling["queues"]) == set(queues)
    assert scaling["total"]["load"] == sum(q["load"] for q in scaling["queues"].values())
    assert "speech_segments" in str(client.pipelines())
    assert client.healthy() and client.ready()


def test_groups(client: inferq.Client) -> None:
    x = np.array([[1, 0, 0, 0]], np.float32)
    g = client.submit_group([{"model": "linear"}, {"model": "linear"}], inputs={"x": x})
    done = client.group(g["id"], wait=30)
    assert done["status"] == "succeeded" and len(done["jobs"]) == 2
    for record in done["jobs"]:
        np.testing.assert_allclose(record["result"]["outputs"][0]["data"], linear(x).ravel(), rtol=1e-6)


def test_environment_variables_configure_the_client(stack, user_key, monkeypatch) -> None:
    monkeypatch.setenv("INFERQ_URL", stack.url)
    monkeypatch.setenv("INFERQ_API_KEY", user_key)
    with inferq.Client() as c:
        assert c.base_url == stack.url
        assert any(m["name"] == "linear" for m in c.models())


def test_events_resume_after_the_api_restarts_without_repeating_one(stack, user_key) -> None:
    import signal
    import threading

    from conftest import free_port

    port = free_port()
    url = stack.api("api-restart-1", port=port)
    with inferq.Client(url, user_key, max_retries=10, backoff=0.2) as c:
        # Scheduled 2 s out: it goes scheduled → queued → running → succeeded while the API restarts.
        job = c.submit("linear", {"x": np.ones((1, 4), np.float32)}, delay=2.0)
        stream = job.events()
        first = next(stream)
        assert first.status == "scheduled"

        def restart() -> None:
            old = stack.named["api-restart-1"]
            old.send_signal(signal.SIGTERM)
            old.wait(timeout=30)
            stack.api("api-restart-2", port=port)

        t = threading.Thread(target=restart)
        t.start()
        rest = list(stream)
        t.join()
    assert stack.named["api-restart-1"].returncode is not None, "the first API did not stop"
    events = [first, *rest]
    assert events[-1].status == "succeeded"
    ids = [e.id for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), ids
    np.testing.assert_allclose(events[-1].data["result"]["outputs"][0]["data"], linear(np.ones((1, 4))).ravel(), rtol=1e-6)
