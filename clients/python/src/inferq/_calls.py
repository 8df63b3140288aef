"""The HTTP layer, written once for both clients: each API operation becomes a :class:`Call` (what
to send, whether it is safe to send twice, how to read the answer) that the sync and async
clients run with their own httpx client. No I/O happens here.

``COVERED`` and ``LEFT_OUT`` name every operation of docs/openapi.json; tests/test_openapi.py fails
when the document gains one that is in neither.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping, Sequence, Union
from urllib.parse import quote

import httpx

from . import tensors
from .errors import error_from_response

DEFAULT_URL = "http://127.0.0.1:8080"
#: How long one ``?wait=`` long-poll asks the server to hold the request (the server caps it at
#: its ``INFERQ_MAX_WAIT_SECS``).
POLL_WAIT_SECS = 30.0
FINAL = frozenset({"succeeded", "failed", "cancelled"})

#: operationId → (method, path, the client method that calls it).
COVERED: dict[str, tuple[str, str, str]] = {
    "submit_job": ("POST", "/jobs", "submit"),
    "submit_batch": ("POST", "/jobs/batch", "submit_many"),
    "job_status": ("GET", "/status/{id}", "status"),
    "cancel_job": ("DELETE", "/jobs/{id}", "cancel"),
    "job_events": ("GET", "/jobs/{id}/events", "events"),
    "list_jobs": ("GET", "/jobs", "jobs"),
    "submit_group": ("POST", "/groups", "submit_group"),
    "group_status": ("GET", "/groups/{id}", "group"),
    "cancel_group": ("DELETE", "/groups/{id}", "cancel_group"),
    "list_models": ("GET", "/models", "models"),
    "retire_model": ("DELETE", "/models/{name}", "retire_model"),
    "list_pipelines": ("GET", "/pipelines", "pipelines"),
    "list_queues": ("GET", "/queues", "queues"),
    "get_scaling": ("GET", "/scaling", "scaling"),
    "list_workers": ("GET", "/workers", "workers"),
    "list_dead_letters": ("GET", "/dead", "dead_letters"),
    "retry_dead_letter": ("POST", "/dead/{id}/retry", "retry_dead_letter"),
    "delete_dead_letter": ("DELETE", "/dead/{id}", "delete_dead_letter"),
    "create_key": ("POST", "/keys", "create_key"),
    "list_keys": ("GET", "/keys", "keys"),
    "revoke_key": ("DELETE", "/keys/{id}", "revoke_key"),
    "metrics": ("GET", "/metrics", "metrics"),
    "healthz": ("GET", "/healthz", "healthy"),
    "readyz": ("GET", "/readyz", "ready"),
}

#: Operations the client deliberately leaves out, with the reason.
LEFT_OUT: dict[str, str] = {
    "get_job": "GET /jobs/{id} answers exactly as GET /status/{id}, which status() calls",
    "dashboard": "the operator's web page, for browsers",
    "openai_create_embeddings": "the OpenAI API (/v1), served for the openai SDK, which is its client",
    "openai_list_models": "the OpenAI API (/v1), served for the openai SDK, which is its client",
    "openai_retrieve_model": "the OpenAI API (/v1), served for the openai SDK, which is its client",
    "openai_upload_file": "the OpenAI API (/v1), served for the openai SDK, which is its client",
    "openai_list_files": "the OpenAI API (/v1), served for the openai SDK, which is its client",
    "openai_retrieve_file": "the OpenAI API (/v1), served for the openai SDK, which is its client",
    "openai_delete_file": "the OpenAI API (/v1), served for the openai SDK, which is its client",
    "openai_file_content": "the OpenAI API (/v1), served for the openai SDK, which is its client",
    "openai_create_batch": "the OpenAI API (/v1), served for the openai SDK, which is its client",
    "openai_list_batches": "the OpenAI API (/v1), served for the openai SDK, which is its client",
    "openai_retrieve_batch": "the OpenAI API (/v1), served for the openai SDK, which is its client",
    "openai_cancel_batch": "the OpenAI API (/v1), served for the openai SDK, which is its client",
    "dashboard_file": "the operator's web page's files, for browsers",
    "openapi": "the API's own description, for generators and readers",
    "oip_server_metadata": "Open Inference Protocol: use an OIP client (tritonclient[http]); the native routes reach the same jobs",
    "oip_server_live": "Open Inference Protocol (see oip_server_metadata); healthy() covers liveness",
    "oip_server_ready": "Open Inference Protocol (see oip_server_metadata); ready() covers readiness",
    "oip_model_metadata": "Open Inference Protocol (see oip_server_metadata); models() lists the same metadata",
    "oip_model_version_metadata": "Open Inference Protocol (see oip_server_metadata)",
    "oip_model_ready": "Open Inference Protocol (see oip_server_metadata)",
    "oip_model_version_ready": "Open Inference Protocol (see oip_server_metadata)",
    "oip_infer": "Open Inference Protocol synchronous inference (see oip_server_metadata); submit()+result() is the queued equivalent",
    "oip_infer_version": "Open Inference Protocol (see oip_server_metadata)",
}


@dataclass
class Call:
    """One HTTP request and how to read its answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], Any]
    params: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None
    files: Any = None
    data: Any = None
    #: Safe to send again after it may have reached the server (reads, cancels, and submissions
    #: carrying idempotency keys). Requests that never left (connection refused, a
    #: ``too_many_connections`` answer) are retried whatever this says.
    idempotent: bool = False
    #: Read timeout for this request (a long-poll waits longer than the default).
    timeout: float | None = None

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``httpx.Client.request`` for this call."""
        kw: dict[str, Any] = {"params": self.params, "headers": self.headers}
        if self.json is not None:
            kw["json"] = self.json
        if self.content is not None:
            kw["content"] = self.content
        if self.files is not None:
            kw["files"] = self.files
        if self.data is not None:
            kw["data"] = self.data
        if self.timeout is not None:
            kw["timeout"] = httpx.Timeout(10.0, read=self.timeout)
        return kw


def settings(base_url: str | None, api_key: str | None) -> tuple[str, str | None]:
    """The base URL and key, from the arguments or ``INFERQ_URL`` / ``INFERQ_API_KEY``."""
    url = base_url or os.environ.get("INFERQ_URL") or DEFAULT_URL
    key = api_key if api_key is not None else os.environ.get("INFERQ_API_KEY") or None
    return url.rstrip("/"), key


def default_headers(api_key: str | None) -> dict[str, str]:
    """Headers every request carries."""
    headers = {"user-agent": "inferq-python/0.1.0"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    return headers


def retry_after(response: httpx.Response) -> float | None:
    """The ``Retry-After`` header in seconds, if it is a number."""
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def raise_for(response: httpx.Response) -> None:
    """Raises the :class:`~inferq.errors.APIError` subclass an error answer stands for."""
    if response.status_code < 400:
        return
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    raise error_from_response(response.status_code, body, retry_after(response))


def error_code(response: httpx.Response) -> str | None:
    """The ``error.code`` of an answer, if it has one."""
    try:
        body = response.json()
        return body["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def backoff(attempt: int, base: float, hint: float | None) -> float:
    """Seconds before retry ``attempt`` (0-based): exponential with full jitter, at least the
    server's ``Retry-After`` (capped at 10 s)."""
    delay = random.uniform(0, min(5.0, base * (2**attempt)))
    if hint is not None:
        delay = max(delay, min(hint, 10.0))
    return delay


def _json(response: httpx.Response) -> Any:
    raise_for(response)
    return response.json()


def _ok(response: httpx.Response) -> bool:
    return response.status_code == 200


def _text(response: httpx.Response) -> str:
    raise_for(response)
    return response.text


def _no_body(response: httpx.Response) -> None:
    raise_for(response)


def _segment(value: str) -> str:
    return quote(value, safe="")


# ---- jobs -------------------------------------------------------------------------------------

def job_parameters(
    *,
    priority: int | None,
    timeout: float | None,
    deadline: float | None,
    delay: float | None,
    result_ttl: int | None,
    cache: bool | None,
    parameters: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The request's ``parameters`` from the keyword arguments (seconds become milliseconds)."""
    p: dict[str, Any] = dict(parameters or {})
    if priority is not None:
        p["priority"] = int(priority)
    if timeout is not None:
        p["timeout_ms"] = int(round(timeout * 1000))
    if deadline is not None:
        p["deadline"] = int(round(deadline * 1000))
    if delay is not None:
        p["delay_ms"] = int(round(delay * 1000))
    if result_ttl is not None:
        p["result_ttl_secs"] = int(result_ttl)
    if cache is not None:
        p["cache"] = bool(cache)
    return p


def job_body(
    model: str,
    outputs: Sequence[str] | None,
    parameters: dict[str, Any],
    webhook: Mapping[str, Any] | str | None,
) -> dict[str, Any]:
    """A ``POST /jobs`` body without its inputs."""
    body: dict[str, Any] = {"model": model}
    if outputs is not None:
        body["outputs"] = [{"name": n} for n in outputs]
    if parameters:
        body["parameters"] = parameters
    if webhook is not None:
        body["webhook"] = {"url": webhook} if isinstance(webhook, str) else dict(webhook)
    return body


def submitted(response: httpx.Response) -> dict[str, Any]:
    """The answer to a submission: ``{"id", "status", …}`` plus ``"replayed"``."""
    raise_for(response)
    body = response.json()
    body["replayed"] = response.headers.get("idempotent-replayed", "false").lower() == "true"
    return body


def submit(
    model: str,
    inputs: Mapping[str, Any],
    *,
    binary: bool,
    idempotency_key: str | None,
    body: dict[str, Any],
) -> Call:
    """``POST /jobs`` with tensors, in the binary framing or as JSON."""
    headers: dict[str, str] = {}
    if idempotency_key is not None:
        headers["idempotency-key"] = idempotency_key
    call = Call("POST", "/jobs", submitted, headers=headers, idempotent=idempotency_key is not None)
    if binary:
        content, json_len = tensors.encode_binary_request(body, inputs)
        headers["content-type"] = "application/octet-stream"
        headers["inference-header-content-length"] = str(json_len)
        call.content = content
    else:
        full = {**body, "inputs": [tensors.from_array(n, v) for n, v in inputs.items()]}
        headers["content-type"] = "application/json"
        call.content = json.dumps(full, separators=(",", ":")).encode("utf-8")
    return call


AudioSource = Union[str, os.PathLike, bytes, BinaryIO]


def read_audio(audio: AudioSource) -> tuple[str, bytes]:
    """``(file name, bytes)`` of a recording given as a path, bytes or a binary file."""
    if isinstance(audio, (bytes, bytearray)):
        return "audio", bytes(audio)
    if isinstance(audio, (str, os.PathLike)):
        path = Path(audio)
        return path.name, path.read_bytes()
    return getattr(audio, "name", "audio"), audio.read()


def submit_pipeline(
    pipeline: str,
    audio: AudioSource,
    parameters: Mapping[str, Any] | None,
    webhook: Mapping[str, Any] | str | None,
    idempotency_key: str | None,
) -> Call:
    """``POST /jobs`` as multipart: a pipeline job with its file."""
    name, raw = read_audio(audio)
    data = {"pipeline": pipeline}
    if parameters:
        data["parameters"] = json.dumps(dict(parameters))
    if webhook is not None:
        data["webhook"] = json.dumps({"url": webhook} if isinstance(webhook, str) else dict(webhook))
    headers = {"idempotency-key": idempotency_key} if idempotency_key else {}
    return Call(
        "POST",
        "/jobs",
        submitted,
        headers=headers,
        data=data,
        files={"audio": (os.path.basename(str(name)), raw, "application/octet-stream")},
        idempotent=idempotency_key is not None,
    )


def submit_embeddings(
    texts: Sequence[str],
    ids: Sequence[str] | None,
    parameters: Mapping[str, Any] | None,
    webhook: Mapping[str, Any] | str | None,
) -> Call:
    """``POST /jobs`` as JSON: a ``text_embeddings`` job of texts (and an id per text)."""
    body: dict[str, Any] = {"pipeline": "text_embeddings", "texts": list(texts)}
    if ids is not None:
        body["ids"] = list(ids)
    if parameters:
        body["parameters"] = dict(parameters)
    if webhook is not None:
        body["webhook"] = {"url": webhook} if isinstance(webhook, str) else dict(webhook)
    return Call("POST", "/jobs", submitted, json=body)


def embedding_vectors(result: Mapping[str, Any]) -> list[list[float]]:
    """The vectors of a ``text_embeddings`` result, floats whichever ``encoding_format`` it used."""
    import base64
    import struct

    out = []
    for e in result.get("embeddings") or []:
        if isinstance(e, str):
            raw = base64.b64decode(e)
            out.append(list(struct.unpack("<%df" % (len(raw) // 4), raw)))
        else:
            out.append([float(x) for x in e])
    return out


def submit_batch(items: list[dict[str, Any]]) -> Call:
    """``POST /jobs/batch``; safe to resend only when every item has an idempotency key."""
    safe = all("idempotency_key" in i for i in items)
    return Call("POST", "/jobs/batch", _json, json={"jobs": items}, idempotent=safe)


def status(job_id: str, wait: float | None = None, binary: bool = True) -> Call:
    """``GET /status/<id>``, optionally long-polling; outputs in the binary framing."""
    params = {"wait": f"{wait:g}"} if wait else None
    headers = {"accept": "application/octet-stream"} if binary else {"accept": "application/json"}

    def parse(response: httpx.Response) -> dict[str, Any]:
        raise_for(response)
        length = response.headers.get("inference-header-content-length")
        return tensors.decode_record(response.content, int(length) if length is not None else None)

    return Call(
        "GET",
        f"/status/{_segment(job_id)}",
        parse,
        params=params,
        headers=headers,
        idempotent=True,
        timeout=(wait or 0) + 30.0,
    )


def cancel(job_id: str) -> Call:
    """``DELETE /jobs/<id>``."""
    return Call("DELETE", f"/jobs/{_segment(job_id)}", _json, idempotent=True)


def list_jobs(status: str | None, model: str | None, limit: int | None, cursor: str | None) -> Call:
    """One page of ``GET /jobs``."""
    params = {k: v for k, v in {"status": status, "model": model, "limit": limit, "cursor": cursor}.items() if v is not None}
    return Call("GET", "/jobs", _json, params=params, idempotent=True)


# ---- groups, models, operations ---------------------------------------------------------------

def submit_group(jobs: list[dict[str, Any]], inputs: Mapping[str, Any] | None) -> Call:
    """``POST /groups``: members are ``{"model", "inputs"?: {name: array}, …}``."""
    members = []
    for job in jobs:
        m = dict(job)
        if "inputs" in m and isinstance(m["inputs"], Mapping):
            m["inputs"] = [tensors.from_array(n, v) for n, v in m["inputs"].items()]
        members.append(m)
    body: dict[str, Any] = {"jobs": members}
    if inputs is not None:
        body["inputs"] = [tensors.from_array(n, v) for n, v in inputs.items()]
    return Call("POST", "/groups", _json, json=body)


def group(group_id: str, wait: float | None) -> Call:
    """``GET /groups/<id>``."""
    params = {"wait": f"{wait:g}"} if wait else None
    return Call("GET", f"/groups/{_segment(group_id)}", _json, params=params, idempotent=True, timeout=(wait or 0) + 30.0)


def simple(method: str, path: str, params: dict[str, Any] | None = None, body: Any = None, parse: Callable[[httpx.Response], Any] = _json) -> Call:
    """A call whose answer is JSON (reads and cancels are safe to resend)."""
    clean = {k: v for k, v in (params or {}).items() if v is not None} or None
    return Call(method, path, parse, params=clean, json=body, idempotent=method in ("GET", "DELETE"))


def healthy() -> Call:
    """``GET /healthz``: ``True`` when the process answers 200."""
    return Call("GET", "/healthz", _ok, idempotent=True)


def ready() -> Call:
    """``GET /readyz``: ``True`` when the API reaches Redis."""
    return Call("GET", "/readyz", _ok, idempotent=True)


def text(path: str) -> Call:
    """A ``GET`` whose answer is text."""
    return Call("GET", path, _text, idempotent=True)


def no_body(method: str, path: str) -> Call:
    """A call whose success has no body (``204``)."""
    return Call(method, path, _no_body, idempotent=method == "DELETE")


def quoted(value: str) -> str:
    """A path segment, percent-encoded."""
    return _segment(value)


def final_outcome(job_id: str, record: dict[str, Any]) -> None:
    """Raises :class:`JobFailed` / :class:`JobCancelled` for a record that ended badly."""
    from .errors import JobCancelled, JobFailed

    state = record.get("status")
    if state == "failed":
        err = record.get("error") or {}
        raise JobFailed(job_id, str(err.get("code", "unknown")), str(err.get("message", "")), record)
    if state == "cancelled":
        raise JobCancelled(job_id, record)


def result_of(record: dict[str, Any]) -> Any:
    """A succeeded job's result: outputs as numpy arrays for a model job, the JSON result
    (``{"segments", "duration", "sample_rate"}``) for a pipeline job."""
    result = record.get("result") or {}
    if "outputs" in result:
        return tensors.outputs_of(record)
    return result


__all__ = ["Call", "COVERED", "LEFT_OUT"]
