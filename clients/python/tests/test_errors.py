"""Every error class, raised from what the real API answers, with the server's code and message;
and the retry rules (what is resent, what is not)."""

from __future__ import annotations

import uuid

import httpx
import numpy as np
import pytest

import inferq
from inferq import _calls
from conftest import Stack, free_port

X = {"x": np.ones((1, 4), np.float32)}
SLOW = {"x": np.array([[0.0]], np.float32)}


class Counting(httpx.HTTPTransport):
    """An httpx transport that counts the requests it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        return super().handle_request(request)


@pytest.fixture(scope="module")
def strict_api(stack: Stack) -> str:
    """A second API on the same Redis and namespace, with a queue limit of 1 and 4 KiB bodies."""
    return stack.api("api-strict", INFERQ_MAX_QUEUED="1", INFERQ_MAX_BODY_BYTES="4096")


@pytest.fixture(scope="module")
def redisless_api(stack: Stack) -> str:
    """An API whose Redis is not there."""
    return stack.api("api-no-redis", INFERQ_REDIS_URL=f"redis://127.0.0.1:{free_port()}", INFERQ_REDIS_TIMEOUT_MS="200")


def test_unauthorized_and_forbidden(stack: Stack, admin: inferq.Client, client: inferq.Client) -> None:
    with inferq.Client(stack.url, "iqk_0000000000000000_" + "0" * 64) as bad:
        with pytest.raises(inferq.Unauthorized) as e:
            bad.models()
    assert e.value.status == 401 and e.value.code == "unauthorized"
    reader = admin.create_key("team-a", ["read"])["key"]
    with inferq.Client(stack.url, reader) as c:
        assert c.models()
        with pytest.raises(inferq.Forbidden) as f:
            c.submit("linear", X)
    assert f.value.status == 403 and f.value.code == "forbidden"
    with pytest.raises(inferq.Forbidden):
        client.queues()  # an operator's route


def test_not_found_bad_request_and_validation(client: inferq.Client) -> None:
    with pytest.raises(inferq.NotFound) as e:
        client.status(str(uuid.uuid4()))
    assert e.value.code == "job_not_found"
    with pytest.raises(inferq.BadRequest) as b:
        client.status("not-a-uuid")
    assert b.value.code == "invalid_job_id"
    with pytest.raises(inferq.ValidationError) as v:
        client.submit("no_such_model", X)
    assert v.value.code == "unknown_model" and "no_such_model" in v.value.message
    with pytest.raises(inferq.ValidationError) as s:
        client.submit("linear", {"x": np.ones((1, 5), np.float32)})
    assert s.value.code == "shape_mismatch"


def test_unsupported_media_type(client: inferq.Client) -> None:
    call = _calls.Call("POST", "/jobs", _calls.submitted, headers={"content-type": "text/plain"}, content=b"hi")
    with pytest.raises(inferq.UnsupportedMediaType) as e:
        client._run(call)
    assert e.value.status == 415


def test_quota_exceeded_carries_retry_after(stack: Stack, admin: inferq.Client) -> None:
    key = admin.create_key("tenant-quota", ["submit", "read"], max_queued=1)["key"]
    with inferq.Client(stack.url, key) as c:
        first = c.submit("slow", SLOW)
        with pytest.raises(inferq.QuotaExceeded) as e:
            c.submit("slow", SLOW)
        first.result(timeout=60)
    assert e.value.status == 429 and e.value.code == "quota_exceeded"
    assert e.value.retry_after is not None and 1 <= e.value.retry_after <= 3600


def test_rate_limited(stack: Stack, admin: inferq.Client) -> None:
    key = admin.create_key("tenant-rate", ["submit", "read"], rate=0.01, burst=1)["key"]
    with inferq.Client(stack.url, key) as c:
        c.submit("linear", X)
        with pytest.raises(inferq.RateLimited) as e:
            c.submit("linear", X)
    assert e.value.code == "rate_limited" and e.value.retry_after and e.value.retry_after > 0


def test_overloaded_and_payload_too_large(strict_api: str, user_key: str) -> None:
    with inferq.Client(strict_api, user_key) as c:
        jobs: list[inferq.Job] = []
        with pytest.raises(inferq.Overloaded) as e:
            for _ in range(6):
                jobs.append(c.submit("slow", SLOW))
        assert e.value.code == "overloaded" and e.value.retry_after is not None
        with pytest.raises(inferq.PayloadTooLarge) as p:
            c.submit("mlp_small", {"x": np.zeros((64, 64), np.float32)})
        assert p.value.status == 413
        for j in jobs:
            j.result(timeout=60)


def test_503_is_retried_for_reads_and_keyed_submissions_only(redisless_api: str, user_key: str) -> None:
    t = Counting()
    with inferq.Client(redisless_api, user_key, max_retries=2, backoff=0.01, transport=t) as c:
        with pytest.raises(inferq.ServiceUnavailable) as e:
            c.models()
        assert e.value.status == 503 and e.value.code == "redis_unavailable"
        assert t.sent == 3
        # The key check needs Redis too, so any answer is a 503; a plain submission is sent once…
        t.sent = 0
        with pytest.raises(inferq.ServiceUnavailable):
            c.submit("linear", X)
        assert t.sent == 1
        # …and a keyed one, which the server deduplicates, is retried.
        t.sent = 0
        with pytest.raises(inferq.ServiceUnavailable):
            c.submit("linear", X, idempotency_key="k-1")
        assert t.sent == 3


def test_an_unreachable_api_is_a_network_error_after_retries() -> None:
    t = Counting()
    with inferq.Client(f"http://127.0.0.1:{free_port()}", max_retries=2, backoff=0.01, transport=t) as c:
        with pytest.raises(inferq.NetworkError) as e:
            c.submit("linear", X)
    assert isinstance(e.value.__cause__, httpx.ConnectError)
    assert t.sent == 3  # a refused connection never reached a server: safe to resend


def test_a_failed_job_raises_job_failed_with_its_code(client: inferq.Client) -> None:
    # Scheduled 2 s out but required to start within 0.2 s of submission: deadline_exceeded.
    job = client.submit("linear", X, delay=2.0, timeout=0.2)
    with pytest.raises(inferq.JobFailed) as e:
        job.result(timeout=60)
    assert e.value.code == "deadline_exceeded" and e.value.job_id == job.id
    assert e.value.record["status"] == "failed"


def test_the_hierarchy_lets_callers_catch_broadly() -> None:
    assert issubclass(inferq.QuotaExceeded, inferq.TooManyRequests)
    assert issubclass(inferq.TooManyRequests, inferq.APIError)
    assert issubclass(inferq.ServiceUnavailable, inferq.ServerError)
    assert issubclass(inferq.JobFailed, inferq.JobError) and issubclass(inferq.JobError, inferq.InferqError)
    assert issubclass(inferq.NetworkError, inferq.InferqError)
