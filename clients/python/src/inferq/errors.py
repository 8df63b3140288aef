"""The exceptions the client raises: one class per kind of failure a caller handles differently.

Every error the API answers carries the server's ``code`` and ``message`` (docs/api.md, "Errors");
a job that ends badly raises :class:`JobFailed` or :class:`JobCancelled` with its record.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "InferqError",
    "NetworkError",
    "APIError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "ValidationError",
    "TooManyRequests",
    "QuotaExceeded",
    "RateLimited",
    "Overloaded",
    "ServerError",
    "ServiceUnavailable",
    "JobError",
    "JobFailed",
    "JobCancelled",
    "JobTimeout",
    "WebhookVerificationError",
]


class InferqError(Exception):
    """Base class of every exception this package raises."""


class NetworkError(InferqError):
    """The API could not be reached (or the connection broke) and retrying did not help.

    ``__cause__`` is the underlying ``httpx`` transport error.
    """


class APIError(InferqError):
    """The API answered with an error status.

    Attributes:
        status: the HTTP status code.
        code: the server's error code (``"unknown_model"``, ``"job_not_found"``, …).
        message: the server's message, saying what was wrong.
        body: the decoded JSON body (or ``None`` when it was not JSON).
    """

    def __init__(self, status: int, code: str, message: str, body: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body


class BadRequest(APIError):
    """400: the request was malformed (``malformed_json``, ``invalid_request``, ``invalid_job_id``)."""


class Unauthorized(APIError):
    """401: no API key, or an unknown or revoked one."""


class Forbidden(APIError):
    """403: the API key lacks the scope the route needs."""


class NotFound(APIError):
    """404: unknown or expired job, group, model, key or dead letter (or another tenant's)."""


class Conflict(APIError):
    """409: the request contradicts the current state (``job_finished``, ``model_in_use``, …)."""


class PayloadTooLarge(APIError):
    """413: the body (or a pipeline's upload) is larger than the API accepts."""


class UnsupportedMediaType(APIError):
    """415: the request's content type is not one the route takes."""


class ValidationError(APIError):
    """422: a well-formed request that does not fit (unknown model, wrong input, shape, datatype…)."""


class TooManyRequests(APIError):
    """429: try again later.

    Attributes:
        retry_after: seconds the server suggests waiting (its ``Retry-After``), or ``None``.
    """

    def __init__(
        self, status: int, code: str, message: str, body: Any = None, retry_after: float | None = None
    ) -> None:
        super().__init__(status, code, message, body)
        self.retry_after = retry_after


class QuotaExceeded(TooManyRequests):
    """429 ``quota_exceeded``: the tenant already has its ``max_queued`` jobs waiting or running."""


class RateLimited(TooManyRequests):
    """429 ``rate_limited``: the tenant submits faster than its rate allows."""


class Overloaded(TooManyRequests):
    """429 ``overloaded``: the model's queue is full (``INFERQ_MAX_QUEUED``)."""


class ServerError(APIError):
    """5xx other than 503: a server bug or misconfiguration; retrying will not help."""


class ServiceUnavailable(ServerError):
    """503 (``redis_unavailable``, ``too_many_connections``, ``not_replicated``) that persisted
    through the retries. A submission is retried only when it carries an idempotency key: after
    ``not_replicated`` the job may exist, and only the key makes a resend answer with it.

    Attributes:
        retry_after: seconds the server suggested waiting, or ``None``.
    """

    def __init__(
        self, status: int, code: str, message: str, body: Any = None, retry_after: float | None = None
    ) -> None:
        super().__init__(status, code, message, body)
        self.retry_after = retry_after


class JobError(InferqError):
    """Base class of the errors about a job's outcome (not about a request).

    Attributes:
        job_id: the job's id.
        record: the job's record as ``GET /status/<id>`` answered it.
    """

    def __init__(self, message: str, job_id: str, record: dict[str, Any] | None) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.record = record


class JobFailed(JobError):
    """The job ended ``failed``.

    Attributes:
        code: the job's error code (``deadline_exceeded``, ``inference_error``, …).
        message: the job's error message.
    """

    def __init__(self, job_id: str, code: str, message: str, record: dict[str, Any] | None) -> None:
        super().__init__(f"job {job_id} failed: {code}: {message}", job_id, record)
        self.code = code
        self.message = message


class JobCancelled(JobError):
    """The job ended ``cancelled``: it has no result."""

    def __init__(self, job_id: str, record: dict[str, Any] | None) -> None:
        super().__init__(f"job {job_id} was cancelled", job_id, record)


class JobTimeout(JobError, TimeoutError):
    """The job was not final within the time the caller gave; it goes on running.

    ``record`` is the job's record at the last look.
    """

    def __init__(self, job_id: str, timeout: float, record: dict[str, Any] | None) -> None:
        status = record.get("status") if record else None
        super().__init__(f"job {job_id} not final after {timeout:g} s (status {status})", job_id, record)


class WebhookVerificationError(InferqError):
    """A webhook message's signature, timestamp or headers did not verify."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: ValidationError,
}

_TOO_MANY: dict[str, type[TooManyRequests]] = {
    "quota_exceeded": QuotaExceeded,
    "rate_limited": RateLimited,
    "overloaded": Overloaded,
}


def error_from_response(status: int, body: Any, retry_after: float | None) -> APIError:
    """Builds the exception for an error answer (``body`` the decoded JSON, or text)."""
    code, message = f"http_{status}", ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = str(body["error"].get("code", code))
        message = str(body["error"].get("message", ""))
    elif isinstance(body, dict) and isinstance(body.get("error"), str):
        message = body["error"]
    elif isinstance(body, str):
        message = body[:500]
    if status == 429:
        return _TOO_MANY.get(code, TooManyRequests)(status, code, message, body, retry_after)
    if status == 503:
        return ServiceUnavailable(status, code, message, body, retry_after)
    if status >= 500:
        return ServerError(status, code, message, body)
    return _BY_STATUS.get(status, APIError)(status, code, message, body)
