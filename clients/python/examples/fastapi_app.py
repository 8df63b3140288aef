"""A FastAPI service that answers 202 at once and lets its clients poll, with inferq doing the work.

The pattern FastAPI teams build with ``BackgroundTasks`` and an in-memory job dict, without the
dict: the job lives in inferq (Redis), so it survives a restart of this service and any replica
of it can answer the poll.

    POST /predict         {"features": [[...64 numbers...], ...]}  → 202 {"job_id", "status_url"}
    GET  /predict/{id}    → 200 {"job_id", "status", "result"?, "error"?}  (404 unknown id)

Run it with ``INFERQ_URL=http://127.0.0.1:8080 INFERQ_API_KEY=iqk_… uvicorn fastapi_app:app``.
The model is ``INFERQ_EXAMPLE_MODEL`` (default ``mlp_small``; input ``x``, output ``logits``).
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import numpy as np
from fastapi import FastAPI, HTTPException, Request, Response
from pydantic import BaseModel

import inferq
from inferq.tensors import outputs_of

MODEL = os.environ.get("INFERQ_EXAMPLE_MODEL", "mlp_small")
INPUT = os.environ.get("INFERQ_EXAMPLE_INPUT", "x")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """One AsyncClient (one connection pool) for the process, from INFERQ_URL / INFERQ_API_KEY."""
    async with inferq.AsyncClient() as client:
        app.state.inferq = client
        yield


app = FastAPI(title="predict (inferq example)", lifespan=lifespan)


class PredictRequest(BaseModel):
    """Rows of features for the model."""

    features: list[list[float]]


@app.post("/predict", status_code=202)
async def predict(body: PredictRequest, request: Request, response: Response) -> dict[str, Any]:
    """Queues the inference and answers 202 with where to poll."""
    client: inferq.AsyncClient = request.app.state.inferq
    try:
        job = await client.submit(MODEL, {INPUT: np.asarray(body.features, dtype=np.float32)})
    except inferq.ValidationError as e:
        raise HTTPException(422, f"{e.code}: {e.message}") from e
    except inferq.TooManyRequests as e:
        headers = {"Retry-After": str(int(e.retry_after or 1))}
        raise HTTPException(429, "busy, try again later", headers=headers) from e
    status_url = f"/predict/{job.id}"
    response.headers["Location"] = status_url
    return {"job_id": job.id, "status_url": status_url}


@app.get("/predict/{job_id}")
async def predict_status(job_id: str, request: Request) -> dict[str, Any]:
    """The job's status, and its result (the model's outputs as lists) once it succeeded."""
    client: inferq.AsyncClient = request.app.state.inferq
    try:
        record = await client.status(job_id)
    except (inferq.NotFound, inferq.BadRequest) as e:
        raise HTTPException(404, "unknown job") from e
    answer: dict[str, Any] = {"job_id": job_id, "status": record["status"]}
    if record["status"] == "succeeded":
        answer["result"] = {name: array.tolist() for name, array in outputs_of(record).items()}
    elif record["status"] == "failed":
        answer["error"] = record.get("error")
    return answer

