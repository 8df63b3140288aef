"""The synchronous client: :class:`Client` and the :class:`Job` handle it returns."""

from __future__ import annotations

import time
from typing import Any, Iterator, Mapping, Sequence

import httpx

from . import _calls as calls
from . import tensors
from .errors import APIError, JobTimeout, NetworkError
from .events import Event, SSEParser
from .speech import Progress, ProgressArg, SpeechResult

__all__ = ["Client", "Job"]

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class Job:
    """A handle on a submitted job (like Celery's ``AsyncResult``).

    Attributes:
        id: the job's id.
        submitted_status: the status the submission answered (``queued``, ``scheduled``, or
            ``succeeded`` for a result-cache hit).
        replayed: whether an idempotency key made the submission answer with an earlier job.
    """

    def __init__(self, client: "Client", id: str, submitted_status: str = "queued", replayed: bool = False) -> None:
        self._client = client
        self.id = id
        self.submitted_status = submitted_status
        self.replayed = replayed

    def __repr__(self) -> str:
        return f"Job(id={self.id!r})"

    def record(self) -> dict[str, Any]:
        """The job's record now (``GET /status/<id>``), outputs decoded under ``"array"``."""
        return self._client.status(self.id)

    def status(self) -> str:
        """The job's status now: ``scheduled``, ``queued``, ``running``, ``succeeded``, ``failed`` or ``cancelled``."""
        return str(self.record()["status"])

    def result(self, timeout: float | None = None) -> Any:
        """Waits for the job (long-polling) and returns its result.

        Returns ``{output name: numpy array}`` for a model job, the JSON result for a pipeline job.
        Raises :class:`~inferq.JobFailed`, :class:`~inferq.JobCancelled`, or
        :class:`~inferq.JobTimeout` when ``timeout`` seconds pass first (``None``: wait forever).
        """
        return self._client.result(self.id, timeout=timeout)

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Waits until the job is final and returns its record (never raises for the outcome;
        raises :class:`~inferq.JobTimeout` when ``timeout`` passes first)."""
        return self._client.wait(self.id, timeout=timeout)

    def cancel(self) -> dict[str, Any]:
        """Cancels the job (``DELETE /jobs/<id>``) and returns its record;
        :class:`~inferq.Conflict` (``job_finished``) if it had already finished."""
        return self._client.cancel(self.id)

    def events(self, last_event_id: int | None = None) -> Iterator[Event]:
        """The job's server-sent events, until its final state (see :meth:`Client.events`)."""
        return self._client.events(self.id, last_event_id=last_event_id)


class Client:
    """A synchronous inferq client.

    ``Client("http://127.0.0.1:8080", api_key="iqk_…")``; both default to ``INFERQ_URL`` and
    ``INFERQ_API_KEY`` (then ``http://127.0.0.1:8080`` and no key). Tensors go out in the binary
    framing unless ``binary=False``. Requests that fail on the network or answer 503 are
    retried up to ``max_retries`` times with exponential backoff, but only when sending them
    twice is safe: reads, cancels, and submissions with an idempotency key (a request that never
    reached the server is always retried). Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff: float = 0.25,
        binary: bool = True,
        poll_wait: float = calls.POLL_WAIT_SECS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url, api_key = calls.settings(base_url, api_key)
        self.max_retries = max_retries
        self.backoff = backoff
        self.binary = binary
        self.poll_wait = poll_wait
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=calls.default_headers(api_key),
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the connections."""
        self._http.close()

    # ---- plumbing ----------------------------------------------------------------------------

    def _send(self, call: calls.Call, stream: bool = False) -> httpx.Response:
        attempt = 0
        while True:
            try:
                request = self._http.build_request(call.method, call.path, **call.kwargs())
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as e:
                if attempt < self.max_retries and (call.idempotent or isinstance(e, _NOT_SENT)):
                    time.sleep(calls.backoff(attempt, self.backoff, None))
                    attempt += 1
                    continue
                raise NetworkError(f"{call.method} {call.path}: {e}") from e
            if response.status_code == 503 and attempt < self.max_retries:
                if stream:
                    response.read()
                if call.idempotent or calls.error_code(response) == "too_many_connections":
                    response.close()
                    time.sleep(calls.backoff(attempt, self.backoff, calls.retry_after(response)))
                    attempt += 1
                    continue
            return response

    def _run(self, call: calls.Call) -> Any:
        return call.parse(self._send(call))

    # ---- jobs --------------------------------------------------------------------------------

    def submit(
        self,
        model: str,
        inputs: Mapping[str, Any],
        *,
        outputs: Sequence[str] | None = None,
        priority: int | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
        delay: float | None = None,
        result_ttl: int | None = None,
        cache: bool | None = None,
        webhook: Mapping[str, Any] | str | None = None,
        parameters: Mapping[str, Any] | None = None,
        binary: bool | None = None,
    ) -> Job:
        """Submits a model job (``POST /jobs``) and returns its :class:`Job` at once.

        Args:
            model: the model's name.
            inputs: input name → numpy array (or :class:`~inferq.Tensor` to force a datatype).
            outputs: the outputs to return, in this order (default all).
            priority: 0 to 9 (default 5); higher starts sooner.
            idempotency_key: the same key and body answer with the first job (and make the
                submission safe to retry).
            timeout: the job must *start* within this many seconds, else it fails with
                ``deadline_exceeded``.
            deadline: the same as an absolute Unix time in seconds.
            delay: do not start before this many seconds from now.
            result_ttl: seconds to keep the record once final.
            cache: answer from (and fill) the result cache.
            webhook: a URL, or ``{"url", "events"}``, for signed webhook messages.
            parameters: any other job parameters, as the API names them.
            binary: send tensors in the binary framing (default: the client's setting).
        """
        params = calls.job_parameters(
            priority=priority, timeout=timeout, deadline=deadline, delay=delay,
            result_ttl=result_ttl, cache=cache, parameters=parameters,
        )
        body = calls.job_body(model, outputs, params, webhook)
        answer = self._run(calls.submit(model, inputs, binary=self.binary if binary is None else binary,
                                        idempotency_key=idempotency_key, body=body))
        return Job(self, answer["id"], answer.get("status", "queued"), answer["replayed"])

    def submit_many(
        self,
        model: str,
        inputs: Sequence[Mapping[str, Any]],
        *,
        idempotency_keys: Sequence[str] | None = None,
        outputs: Sequence[str] | None = None,
        priority: int | None = None,
        timeout: float | None = None,
        webhook: Mapping[str, Any] | str | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> list[Job | APIError]:
        """Submits one job per item of ``inputs`` in one request (``POST /jobs/batch``).

        Returns, in order, a :class:`Job` for each accepted item and, for each refused one, the
        :class:`~inferq.APIError` (not raised) saying why: valid items are enqueued even when
        others are refused. With ``idempotency_keys`` (one per item) the request is safe to retry.
        """
        params = calls.job_parameters(priority=priority, timeout=timeout, deadline=None, delay=None,
                                      result_ttl=None, cache=None, parameters=parameters)
        items = _batch_items(model, inputs, idempotency_keys, outputs, params, webhook)
        answer = self._run(calls.submit_batch(items))
        return [_batch_entry(self, Job, entry) for entry in answer["jobs"]]

    def job(self, job_id: str) -> Job:
        """A :class:`Job` handle for an id (no request is made)."""
        return Job(self, job_id)

    def status(self, job_id: str, wait: float | None = None) -> dict[str, Any]:
        """The job's record (``GET /status/<id>``); with ``wait``, answers once the job is final
        or after that many seconds. Binary outputs are decoded under each output's ``"array"``."""
        return self._run(calls.status(job_id, wait, self.binary))

    def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Long-polls until the job is final; returns the record, or raises :class:`~inferq.JobTimeout`."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            left = self.poll_wait if end is None else min(self.poll_wait, end - time.monotonic())
            record = self.status(job_id, wait=max(left, 0.0) or None)
            if record.get("status") in calls.FINAL:
                return record
            if end is not None and time.monotonic() >= end:
                raise JobTimeout(job_id, timeout or 0.0, record)

    def result(self, job_id: str, timeout: float | None = None) -> Any:
        """Waits for the job and returns its result (see :meth:`Job.result`)."""
        record = self.wait(job_id, timeout)
        calls.final_outcome(job_id, record)
        return calls.result_of(record)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancels a job (``DELETE /jobs/<id>``) and returns its record."""
        return self._run(calls.cancel(job_id))

    def events(self, job_id: str, last_event_id: int | None = None) -> Iterator[Event]:
        """The job's server-sent events (``GET /jobs/<id>/events``), ending after its final state.

        The first event is the current state. If the connection breaks before the final state,
        the stream is resumed with ``Last-Event-ID`` (up to ``max_retries`` times in a row), so no
        event is seen twice.
        """
        failures = 0
        last = last_event_id
        while True:
            headers = {"accept": "text/event-stream"}
            if last is not None:
                headers["last-event-id"] = str(last)
            call = calls.Call("GET", f"/jobs/{calls.quoted(job_id)}/events", lambda r: r,
                              headers=headers, idempotent=True, timeout=120.0)
            response = self._send(call, stream=True)
            try:
                if response.status_code >= 400:
                    response.read()
                    calls.raise_for(response)
                parser = SSEParser()
                for event in parser.parse(response.iter_lines()):
                    failures = 0
                    if event.id is not None:
                        last = event.id
                    yield event
                    if event.final:
                        return
                # The stream ended without a final state: either this reader already had it
                # (resumed after it), or the API stopped; resume only in the second case.
                if self._already_final(job_id, last):
                    return
            except httpx.TransportError as e:
                failures += 1
                if failures > self.max_retries:
                    raise NetworkError(f"events of {job_id}: {e}") from e
            finally:
                response.close()
            time.sleep(calls.backoff(failures, self.backoff, None))

    def _already_final(self, job_id: str, last: int | None) -> bool:
        record = self._run(calls.status(job_id, None, False))
        return record.get("status") in calls.FINAL and last is not None and last >= int(record.get("version", 0))

    def jobs(self, status: str | None = None, model: str | None = None, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Every job of the caller's tenant matching the filters, newest first (``GET /jobs``,
        following ``next_cursor``); records without results."""
        cursor = None
        while True:
            page = self._run(calls.list_jobs(status, model, limit, cursor))
            yield from page["jobs"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    # ---- pipelines ---------------------------------------------------------------------------

    def submit_speech(
        self,
        audio: calls.AudioSource,
        *,
        parameters: Mapping[str, Any] | None = None,
        webhook: Mapping[str, Any] | str | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Uploads a recording (path, bytes or binary file) as a ``speech_segments`` job."""
        answer = self._run(calls.submit_pipeline("speech_segments", audio, parameters, webhook, idempotency_key))
        return Job(self, answer["id"], answer.get("status", "queued"), answer["replayed"])

    def speech(
        self,
        audio: calls.AudioSource,
        *,
        parameters: Mapping[str, Any] | None = None,
        progress: ProgressArg = False,
        timeout: float | None = None,
    ) -> SpeechResult:
        """Finds the speech in a recording: uploads it, follows the job and returns its segments.

        ``progress=True`` shows a tqdm bar driven by the job's ``progress`` events (seconds of
        audio done / total); a callable gets ``(done, total)`` instead. ``parameters`` are the
        pipeline's (``threshold``, ``min_silence_duration_ms``, …). Raises
        :class:`~inferq.JobFailed` (e.g. ``invalid_audio``) or :class:`~inferq.JobTimeout`.
        """
        job = self.submit_speech(audio, parameters=parameters)
        end = None if timeout is None else time.monotonic() + timeout
        bar = Progress(progress, "speech")
        record: dict[str, Any] | None = None
        try:
            if progress:
                for event in job.events():
                    bar.update(event.progress)
                    if event.final:
                        record = event.data
                        break
                    if end is not None and time.monotonic() > end:
                        raise JobTimeout(job.id, timeout or 0.0, event.data)
            if record is None:
                left = None if end is None else max(end - time.monotonic(), 0.0)
                record = self.wait(job.id, left)
        finally:
            bar.close()
        calls.final_outcome(job.id, record)
        return SpeechResult.from_result(job.id, record.get("result") or {})

    def submit_embeddings(
        self,
        texts: Sequence[str],
        *,
        ids: Sequence[str] | None = None,
        parameters: Mapping[str, Any] | None = None,
        webhook: Mapping[str, Any] | str | None = None,
    ) -> Job:
        """Submits texts as a ``text_embeddings`` job (all-MiniLM-L6-v2, int8 weights, 384 dimensions)."""
        answer = self._run(calls.submit_embeddings(texts, ids, parameters, webhook))
        return Job(self, answer["id"], answer.get("status", "queued"), answer["replayed"])

    def embed(
        self,
        texts: Sequence[str],
        *,
        parameters: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> list[list[float]]:
        """Embeds texts: submits them, waits for the job and returns one vector per text, in order.

        The whole result (token counts, truncated texts) is the job's ``result``
        (:meth:`submit_embeddings` and :meth:`Job.result`). Raises :class:`~inferq.JobFailed`
        or :class:`~inferq.JobTimeout`.
        """
        job = self.submit_embeddings(texts, parameters=parameters)
        record = self.wait(job.id, timeout)
        calls.final_outcome(job.id, record)
        return calls.embedding_vectors(record.get("result") or {})

    def pipelines(self) -> dict[str, Any]:
        """The pipelines and their parameters (``GET /pipelines``)."""
        return self._run(calls.simple("GET", "/pipelines"))

    # ---- groups ------------------------------------------------------------------------------

    def submit_group(self, jobs: Sequence[Mapping[str, Any]], inputs: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Submits a group (``POST /groups``): members ``{"model", "inputs"?: {name: array}, …}``;
        members without inputs use ``inputs``. Returns ``{"id", "jobs", "status_url"}``."""
        return self._run(calls.submit_group([dict(j) for j in jobs], inputs))

    def group(self, group_id: str, wait: float | None = None) -> dict[str, Any]:
        """A group's status and its members' records (``GET /groups/<id>``)."""
        return self._run(calls.group(group_id, wait))

    def cancel_group(self, group_id: str) -> dict[str, Any]:
        """Cancels a group's unfinished members (``DELETE /groups/<id>``)."""
        return self._run(calls.simple("DELETE", f"/groups/{calls.quoted(group_id)}"))

    # ---- models and operations ---------------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        """The registered models with their inputs, outputs and live workers (``GET /models``)."""
        return self._run(calls.simple("GET", "/models"))["models"]

    def queues(self) -> dict[str, Any]:
        """Per-queue (each model's, each pipeline's as ``pipeline:<name>``) depth, running jobs and throughput, dead letters and recent failures (``GET /queues``, admin)."""
        return self._run(calls.simple("GET", "/queues"))

    def scaling(self) -> dict[str, Any]:
        """The demand for workers an autoscaler reads: per queue and in total, jobs waiting (``depth``), running and their sum (``load``) (``GET /scaling``, admin)."""
        return self._run(calls.simple("GET", "/scaling"))

    def workers(self) -> list[dict[str, Any]]:
        """The live workers (``GET /workers``, admin)."""
        return self._run(calls.simple("GET", "/workers"))["workers"]

    def retire_model(self, name: str) -> dict[str, Any]:
        """Retires a model no live worker serves (``DELETE /models/<name>``, admin)."""
        return self._run(calls.simple("DELETE", f"/models/{calls.quoted(name)}"))

    def dead_letters(self, limit: int | None = None, cursor: str | None = None, tenant: str | None = None) -> dict[str, Any]:
        """One page of dead letters (``GET /dead``, admin)."""
        return self._run(calls.simple("GET", "/dead", {"limit": limit, "cursor": cursor, "tenant": tenant}))

    def retry_dead_letter(self, id: str) -> dict[str, Any]:
        """Queues a dead letter's job again (``POST /dead/<id>/retry``, admin)."""
        return self._run(calls.simple("POST", f"/dead/{calls.quoted(id)}/retry"))

    def delete_dead_letter(self, id: str) -> None:
        """Removes a dead letter (``DELETE /dead/<id>``, admin)."""
        self._run(calls.no_body("DELETE", f"/dead/{calls.quoted(id)}"))

    def create_key(self, tenant: str, scopes: Sequence[str], name: str | None = None,
                   max_queued: int | None = None, rate: float | None = None, burst: int | None = None) -> dict[str, Any]:
        """Makes an API key (``POST /keys``, admin); the answer's ``key`` is shown only this once."""
        body = {k: v for k, v in {"tenant": tenant, "scopes": list(scopes), "name": name,
                                  "max_queued": max_queued, "rate": rate, "burst": burst}.items() if v is not None}
        return self._run(calls.simple("POST", "/keys", body=body))

    def keys(self) -> list[dict[str, Any]]:
        """The stored API keys, never their secrets (``GET /keys``, admin)."""
        return self._run(calls.simple("GET", "/keys"))["keys"]

    def revoke_key(self, id: str) -> dict[str, Any]:
        """Revokes an API key by id (``DELETE /keys/<id>``, admin)."""
        return self._run(calls.simple("DELETE", f"/keys/{calls.quoted(id)}"))

    def metrics(self) -> str:
        """The API's Prometheus metrics, as text (``GET /metrics``)."""
        return self._run(calls.text("/metrics"))

    def healthy(self) -> bool:
        """Whether the API process answers (``GET /healthz``)."""
        return self._run(calls.healthy())

    def ready(self) -> bool:
        """Whether the API reaches Redis (``GET /readyz``)."""
        return self._run(calls.ready())


def _batch_items(model: str, inputs: Sequence[Mapping[str, Any]], keys: Sequence[str] | None,
                 outputs: Sequence[str] | None, params: dict[str, Any],
                 webhook: Mapping[str, Any] | str | None) -> list[dict[str, Any]]:
    if keys is not None and len(keys) != len(inputs):
        raise ValueError("idempotency_keys must have one key per item")
    items = []
    for i, item in enumerate(inputs):
        body = calls.job_body(model, outputs, params, webhook)
        body["inputs"] = [tensors.from_array(n, v) for n, v in item.items()]
        if keys is not None:
            body["idempotency_key"] = keys[i]
        items.append(body)
    return items


def _batch_entry(client: Any, job_type: type, entry: dict[str, Any]) -> Any:
    from .errors import error_from_response

    if "error" in entry:
        code = entry["error"].get("code")
        status = 429 if code in ("quota_exceeded", "rate_limited", "overloaded") else 422
        return error_from_response(status, entry, None)
    return job_type(client, entry["id"], entry.get("status", "queued"), bool(entry.get("idempotent_replayed")))

