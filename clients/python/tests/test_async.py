"""AsyncClient against the real stack: the same API, awaitable."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

import inferq
from references import linear, mlp_small


async def test_async_submit_and_result(aclient: inferq.AsyncClient) -> None:
    xs = [np.random.default_rng(i).standard_normal((2, 64)).astype(np.float32) for i in range(4)]
    jobs = await asyncio.gather(*(aclient.submit("mlp_small", {"x": x}) for x in xs))
    outs = await asyncio.gather(*(j.result(timeout=60) for j in jobs))
    for x, out in zip(xs, outs):
        np.testing.assert_allclose(out["logits"], mlp_small(x), rtol=1e-4, atol=1e-5)
    assert await jobs[0].status() == "succeeded"


async def test_async_batch_events_and_cancel(aclient: inferq.AsyncClient) -> None:
    rows = [np.full((1, 4), i, np.float32) for i in range(2)]
    jobs = await aclient.submit_many("linear", [{"x": r} for r in rows], idempotency_keys=None)
    for r, j in zip(rows, jobs):
        assert isinstance(j, inferq.AsyncJob)
        np.testing.assert_allclose((await j.result(timeout=60))["y"], linear(r), rtol=1e-6)

    job = await aclient.submit("slow", {"x": np.array([[2.0]], np.float32)})
    statuses = [e.status async for e in job.events()]
    assert statuses[-1] == "succeeded"

    busy = [await aclient.submit("slow", {"x": np.array([[0.0]], np.float32)}) for _ in range(3)]
    victim = await aclient.submit("slow", {"x": np.array([[0.0]], np.float32)})
    assert (await victim.cancel())["status"] == "cancelled"
    with pytest.raises(inferq.JobCancelled):
        await victim.result()
    for b in busy:
        await b.result(timeout=60)


async def test_async_errors_are_the_same_classes(aclient: inferq.AsyncClient) -> None:
    with pytest.raises(inferq.ValidationError) as e:
        await aclient.submit("no_such_model", {"x": np.ones((1, 4), np.float32)})
    assert e.value.code == "unknown_model" and e.value.status == 422
    with pytest.raises(inferq.NotFound):
        await aclient.status("00000000-0000-4000-8000-000000000000")
