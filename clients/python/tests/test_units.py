"""The pieces that need no server: the event-stream parser, the error mapping, the backoff."""

from __future__ import annotations

import inferq
from inferq import _calls
from inferq.errors import error_from_response
from inferq.events import SSEParser


def test_the_event_stream_parser_reads_events_and_skips_comments() -> None:
    lines = [
        ": keep-alive", "",
        "event: status", "id: 1", 'data: {"id": "j", "status": "queued"}', "",
        ": keep-alive", "",
        "event: progress", "id: 4", 'data: {"id": "j", "status": "running",', 'data: "progress": {"done": 1.5, "total": 3}}', "",
        "event: status", "id: 7", 'data:{"id": "j", "status": "succeeded"}', "",
    ]
    events = list(SSEParser().parse(lines))
    assert [(e.event, e.id, e.status) for e in events] == [
        ("status", 1, "queued"), ("progress", 4, "running"), ("status", 7, "succeeded")]
    assert events[1].progress == {"done": 1.5, "total": 3}
    assert [e.final for e in events] == [False, False, True]


def test_error_bodies_become_their_classes() -> None:
    e = error_from_response(429, {"error": {"code": "quota_exceeded", "message": "m"}}, 12.0)
    assert isinstance(e, inferq.QuotaExceeded) and e.retry_after == 12.0 and e.message == "m"
    e = error_from_response(429, {"error": {"code": "something_new", "message": "m"}}, None)
    assert type(e) is inferq.TooManyRequests
    e = error_from_response(500, {"error": {"code": "internal", "message": "internal error"}}, None)
    assert type(e) is inferq.ServerError and e.code == "internal"
    e = error_from_response(418, "<html>teapot</html>", None)
    assert type(e) is inferq.APIError and e.code == "http_418" and "teapot" in e.message


def test_backoff_grows_is_capped_and_honours_retry_after() -> None:
    for attempt in range(10):
        assert 0 <= _calls.backoff(attempt, 0.25, None) <= 5.0
    assert _calls.backoff(0, 0.25, 3.0) >= 3.0
    assert _calls.backoff(0, 0.25, 3600.0) == 10.0


def test_embedding_jobs_are_json_and_vectors_read_either_encoding() -> None:
    import base64
    import struct

    call = _calls.submit_embeddings(["a", "b"], ["x", "y"], {"encoding_format": "base64"}, None)
    assert (call.method, call.path) == ("POST", "/jobs")
    assert call.json == {"pipeline": "text_embeddings", "texts": ["a", "b"], "ids": ["x", "y"],
                         "parameters": {"encoding_format": "base64"}}
    packed = base64.b64encode(struct.pack("<3f", 0.5, -1.0, 2.0)).decode()
    assert _calls.embedding_vectors({"embeddings": [packed, [0.5, -1, 2]]}) == [[0.5, -1.0, 2.0]] * 2
