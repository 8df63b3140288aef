"""The asynchronous client: :class:`AsyncClient` and :class:`AsyncJob`, the same API as
:class:`~inferq.Client` with awaitable methods, for FastAPI endpoints and other asyncio code."""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Mapping, Sequence

import httpx

from . import _calls as calls
from .client import _batch_entry, _batch_items
from .errors import APIError, JobTimeout, NetworkError
from .events import Event, SSEParser
from .speech import Progress, ProgressArg, SpeechResult

__all__ = ["AsyncClient", "AsyncJob"]

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class AsyncJob:
    """A handle on a submitted job, with awaitable methods (see :class:`~inferq.Job`).

    Attributes:
        id: the job's id.
        submitted_status: the status the submission answered.
        replayed: whether an idempotency key made the submission answer with an earlier job.
    """

    def __init__(self, client: "AsyncClient", id: str, submitted_status: str = "queued", replayed: bool = False) -> None:
        self._client = client
        self.id = id
        self.submitted_status = submitted_status
        self.replayed = replayed

    def __repr__(self) -> str:
        return f"AsyncJob(id={self.id!r})"

    async def record(self) -> dict[str, Any]:
        """The job's record now (``GET /status/<id>``)."""
        return await self._client.status(self.id)

    async def status(self) -> str:
        """The job's status now."""
        return str((await self.record())["status"])

    async def result(self, timeout: float | None = None) -> Any:
        """Waits for the job and returns its result (see :meth:`inferq.Job.result`)."""
        return await self._client.result(self.id, timeout=timeout)

    async def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Waits until the job is final and returns its record."""
        return await self._client.wait(self.id, timeout=timeout)

    async def cancel(self) -> dict[str, Any]:
        """Cancels the job and returns its record."""
        return await self._client.cancel(self.id)

    def events(self, last_event_id: int | None = None) -> AsyncIterator[Event]:
        """The job's server-sent events, until its final state (``async for``)."""
        return self._client.events(self.id, last_event_id=last_event_id)


class AsyncClient:
    """An asyncio inferq client: the API of :class:`~inferq.Client`, awaitable.

    ``async with AsyncClient() as client: job = await client.submit(...)``. Same settings,
    environment variables, binary framing and retry rules as :class:`~inferq.Client`.
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
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url, api_key = calls.settings(base_url, api_key)
        self.max_retries = max_retries
        self.backoff = backoff
        self.binary = binary
        self.poll_wait = poll_wait
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=calls.default_headers(api_key),
            timeout=timeout,
            transport=transport,
        )

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Closes the connections."""
        await self._http.aclose()

    # ---- plumbing ----------------------------------------------------------------------------

    async def _send(self, call: calls.Call, stream: bool = False) -> httpx.Response:
        attempt = 0
        while True:
            try:
                request = self._http.build_request(call.method, call.path, **call.kwargs())
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as e:
                if attempt < self.max_retries and (call.idempotent or isinstance(e, _NOT_SENT)):
                    await asyncio.sleep(calls.backoff(attempt, self.backoff, None))
                    attempt += 1
                    continue
                raise NetworkError(f"{call.method} {call.path}: {e}") from e
            if response.status_code == 503 and attempt < self.max_retries:
                if stream:
                    await response.aread()
                if call.idempotent or calls.error_code(response) == "too_many_connections":
                    await response.aclose()
                    await asyncio.sleep(calls.backoff(attempt, self.backoff, calls.retry_after(response)))
                    attempt += 1
                    continue
            return response

    async def _run(self, call: calls.Call) -> Any:
        return call.parse(await self._send(call))

    # ---- jobs --------------------------------------------------------------------------------

    async def submit(
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
    ) -> AsyncJob:
        """Submits a model job (``POST /jobs``); arguments as :meth:`inferq.Client.submit`."""
        params = calls.job_parameters(
            priority=priority, timeout=timeout, deadline=deadline, delay=delay,
            result_ttl=result_ttl, cache=cache, parameters=parameters,
        )
        body = calls.job_body(model, outputs, params, webhook)
        answer = await self._run(calls.submit(model, inputs, binary=self.binary if binary is None else binary,
                                              idempotency_key=idempotency_key, body=body))
        return AsyncJob(self, answer["id"], answer.get("status", "queued"), answer["replayed"])

    async def submit_many(
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
    ) -> list[AsyncJob | APIError]:
        """Submits one job per item in one request (``POST /jobs/batch``); see
        :meth:`inferq.Client.submit_many`."""
        params = calls.job_parameters(priority=priority, timeout=timeout, deadline=None, delay=None,
                                      result_ttl=None, cache=None, parameters=parameters)
        items = _batch_items(model, inputs, idempotency_keys, outputs, params, webhook)
        answer = await self._run(calls.submit_batch(items))
        return [_batch_entry(self, AsyncJob, entry) for entry in answer["jobs"]]

    def job(self, job_id: str) -> AsyncJob:
        """An :class:`AsyncJob` handle for an id (no request is made)."""
        return AsyncJob(self, job_id)

    async def status(self, job_id: str, wait: float | None = None) -> dict[str, Any]:
        """The job's record (``GET /status/<id>``), optionally long-polling ``wait`` seconds."""
        return await self._run(calls.status(job_id, wait, self.binary))

    async def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Long-polls until the job is final; returns the record, or raises :class:`~inferq.JobTimeout`."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            left = self.poll_wait if end is None else min(self.poll_wait, end - time.monotonic())
            record = await self.status(job_id, wait=max(left, 0.0) or None)
            if record.get("status") in calls.FINAL:
                return record
            if end is not None and time.monotonic() >= end:
                raise JobTimeout(job_id, timeout or 0.0, record)

    async def result(self, job_id: str, timeout: float | None = None) -> Any:
        """Waits for the job and returns its result (see :meth:`inferq.Job.result`)."""
        record = await self.wait(job_id, timeout)
        calls.final_outcome(job_id, record)
        return calls.result_of(record)

    async def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancels a job (``DELETE /jobs/<id>``) and returns its record."""
        return await self._run(calls.cancel(job_id))

    async def events(self, job_id: str, last_event_id: int | None = None) -> AsyncIterator[Event]:
        """The job's server-sent events, ending after its final state, resumed with
        ``Last-Event-ID`` if the connection breaks (see :meth:`inferq.Client.events`)."""
        failures = 0
        last = last_event_id
        while True:
            headers = {"accept": "text/event-stream"}
            if last is not None:
                headers["last-event-id"] = str(last)
            call = calls.Call("GET", f"/jobs/{calls.quoted(job_id)}/events", lambda r: r,
                              headers=headers, idempotent=True, timeout=120.0)
            response = await self._send(call, stream=True)
            try:
                if response.status_code >= 400:
                    await response.aread()
                    calls.raise_for(response)
                parser = SSEParser()
                async for line in response.aiter_lines():
                    event = parser.feed(line)
                    if event is None:
                        continue
                    failures = 0
                    if event.id is not None:
                        last = event.id
                    yield event
                    if event.final:
                        return
                # The stream ended without a final state: either this reader already had it
                # (resumed after it), or the API stopped; resume only in the second case.
                if await self._already_final(job_id, last):
                    return
            except httpx.TransportError as e:
                failures += 1
                if failures > self.max_retries:
                    raise NetworkError(f"events of {job_id}: {e}") from e
            finally:
                await response.aclose()
            await asyncio.sleep(calls.backoff(failures, self.backoff, None))

    async def _already_final(self, job_id: str, last: int | None) -> bool:
        record = await self._run(calls.status(job_id, None, False))
        return record.get("status") in calls.FINAL and last is not None and last >= int(record.get("version", 0))

    async def jobs(self, status: str | None = None, model: str | None = None, limit: int | None = None) -> AsyncIterator[dict[str, Any]]:
        """Every job of the caller's tenant matching the filters, newest first (``async for``)."""
        cursor = None
        while True:
            page = await self._run(calls.list_jobs(status, model, limit, cursor))
            for record in page["jobs"]:
                yield record
            cursor = page.get("next_cursor")
            if not cursor:
                return

    # ---- pipelines ---------------------------------------------------------------------------

    async def submit_speech(
        self,
        audio: calls.AudioSource,
        *,
        parameters: Mapping[str, Any] | None = None,
        webhook: Mapping[str, Any] | str | None = None,
        idempotency_key: str | None = None,
    ) -> AsyncJob:
        """Uploads a recording as a ``speech_segments`` job."""
        answer = await self._run(calls.submit_pipeline("speech_segments", audio, parameters, webhook, idempotency_key))
        return AsyncJob(self, answer["id"], answer.get("status", "queued"), answer["replayed"])

    async def speech(
        self,
        audio: calls.AudioSource,
        *,
        parameters: Mapping[str, Any] | None = None,
        progress: ProgressArg = False,
        timeout: float | None = None,
    ) -> SpeechResult:
        """Finds the speech in a recording (see :meth:`inferq.Client.speech`)."""
        job = await self.submit_speech(audio, parameters=parameters)
        end = None if timeout is None else time.monotonic() + timeout
        bar = Progress(progress, "speech")
        record: dict[str, Any] | None = None
        try:
            if progress:
                async for event in job.events():
                    bar.update(event.progress)
                    if event.final:
                        record = event.data
                        break
                    if end is not None and time.monotonic() > end:
                        raise JobTimeout(job.id, timeout or 0.0, event.data)
            if record is None:
                left = None if end is None else max(end - time.monotonic(), 0.0)
                record = await self.wait(job.id, left)
        finally:
            bar.close()
        calls.final_outcome(job.id, record)
        return SpeechResult.from_result(job.id, record.get("result") or {})

    async def submit_embeddings(
        self,
        texts: Sequence[str],
        *,
        ids: Sequence[str] | None = None,
        parameters: Mapping[str, Any] | None = None,
        webhook: Mapping[str, Any] | str | None = None,
    ) -> AsyncJob:
        """Submits texts as a ``text_embeddings`` job (see :meth:`inferq.Client.submit_embeddings`)."""
        answer = await self._run(calls.submit_embeddings(texts, ids, parameters, webhook))
        return AsyncJob(self, answer["id"], answer.get("status", "queued"), answer["replayed"])

    async def embed(
        self,
        texts: Sequence[str],
        *,
        parameters: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> list[list[float]]:
        """Embeds texts and returns one vector per text (see :meth:`inferq.Client.embed`)."""
        job = await self.submit_embeddings(texts, parameters=parameters)
        record = await self.wait(job.id, timeout)
        calls.final_outcome(job.id, record)
        return calls.embedding_vectors(record.get("result") or {})

    async def pipelines(self) -> dict[str, Any]:
        """The pipelines and their parameters (``GET /pipelines``)."""
        return await self._run(calls.simple("GET", "/pipelines"))

    # ---- groups ------------------------------------------------------------------------------

    async def submit_group(self, jobs: Sequence[Mapping[str, Any]], inputs: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Submits a group (``POST /groups``); see :meth:`inferq.Client.submit_group`."""
        return await self._run(calls.submit_group([dict(j) for j in jobs], inputs))

    async def group(self, group_id: str, wait: float | None = None) -> dict[str, Any]:
        """A group's status and its members' records (``GET /groups/<id>``)."""
        return await self._run(calls.group(group_id, wait))

    async def cancel_group(self, group_id: str) -> dict[str, Any]:
        """Cancels a group's unfinished members (``DELETE /groups/<id>``)."""
        return await self._run(calls.simple("DELETE", f"/groups/{calls.quoted(group_id)}"))

    # ---- models and operations ---------------------------------------------------------------

    async def models(self) -> list[dict[str, Any]]:
        """The registered models (``GET /models``)."""
        return (await self._run(calls.simple("GET", "/models")))["models"]

    async def queues(self) -> dict[str, Any]:
        """Per-queue figures, pipelines included (``GET /queues``, admin)."""
        return await self._run(calls.simple("GET", "/queues"))

    async def scaling(self) -> dict[str, Any]:
        """The demand for workers per queue and in total (``GET /scaling``, admin)."""
        return await self._run(calls.simple("GET", "/scaling"))

    async def workers(self) -> list[dict[str, Any]]:
        """The live workers (``GET /workers``, admin)."""
        return (await self._run(calls.simple("GET", "/workers")))["workers"]

    async def retire_model(self, name: str) -> dict[str, Any]:
        """Retires a model no live worker serves (``DELETE /models/<name>``, admin)."""
        return await self._run(calls.simple("DELETE", f"/models/{calls.quoted(name)}"))

    async def dead_letters(self, limit: int | None = None, cursor: str | None = None, tenant: str | None = None) -> dict[str, Any]:
        """One page of dead letters (``GET /dead``, admin)."""
        return await self._run(calls.simple("GET", "/dead", {"limit": limit, "cursor": cursor, "tenant": tenant}))

    async def retry_dead_letter(self, id: str) -> dict[str, Any]:
        """Queues a dead letter's job again (``POST /dead/<id>/retry``, admin)."""
        return await self._run(calls.simple("POST", f"/dead/{calls.quoted(id)}/retry"))

    async def delete_dead_letter(self, id: str) -> None:
        """Removes a dead letter (``DELETE /dead/<id>``, admin)."""
        await self._run(calls.no_body("DELETE", f"/dead/{calls.quoted(id)}"))

    async def create_key(self, tenant: str, scopes: Sequence[str], name: str | None = None,
                         max_queued: int | None = None, rate: float | None = None, burst: int | None = None) -> dict[str, Any]:
        """Makes an API key (``POST /keys``, admin)."""
        body = {k: v for k, v in {"tenant": tenant, "scopes": list(scopes), "name": name,
                                  "max_queued": max_queued, "rate": rate, "burst": burst}.items() if v is not None}
        return await self._run(calls.simple("POST", "/keys", body=body))

    async def keys(self) -> list[dict[str, Any]]:
        """The stored API keys, never their secrets (``GET /keys``, admin)."""
        return (await self._run(calls.simple("GET", "/keys")))["keys"]

    async def revoke_key(self, id: str) -> dict[str, Any]:
        """Revokes an API key by id (``DELETE /keys/<id>``, admin)."""
        return await self._run(calls.simple("DELETE", f"/keys/{calls.quoted(id)}"))

    async def metrics(self) -> str:
        """The API's Prometheus metrics, as text (``GET /metrics``)."""
        return await self._run(calls.text("/metrics"))

    async def healthy(self) -> bool:
        """Whether the API process answers (``GET /healthz``)."""
        return await self._run(calls.healthy())

    async def ready(self) -> bool:
        """Whether the API reaches Redis (``GET /readyz``)."""
        return await self._run(calls.ready())
