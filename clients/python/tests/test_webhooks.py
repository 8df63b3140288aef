"""verify_webhook against messages the real workers signed and delivered to a local receiver."""

from __future__ import annotations

import queue
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import numpy as np
import pytest

import inferq
from conftest import WEBHOOK_SECRET, wait_until


class Receiver:
    """An HTTP server on 127.0.0.1 that answers 204 and keeps what it was sent."""

    def __init__(self) -> None:
        self.messages: "queue.Queue[tuple[dict[str, str], bytes]]" = queue.Queue()
        messages = self.messages

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                messages.put((dict(self.headers.items()), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/inferq"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next(self, timeout: float = 60.0) -> tuple[dict[str, str], bytes]:
        return self.messages.get(timeout=timeout)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def test_a_message_signed_by_the_server_verifies(client: inferq.Client, receiver: Receiver) -> None:
    job = client.submit("linear", {"x": np.ones((1, 4), np.float32)}, webhook={"url": receiver.url, "events": ["succeeded"]})
    try:
        headers, body = receiver.next()
    except queue.Empty:
        raise AssertionError(f"no message; the job's record: {client.status(job.id)}") from None
    message = inferq.verify_webhook(body, headers, WEBHOOK_SECRET)
    hook = wait_until(lambda: (w := client.status(job.id).get("webhook")) and w["state"] == "delivered" and w,
                      what="the delivery's outcome on the record")
    assert hook["attempts"] == 1 and hook["last_status"] == 204, hook  # the first attempt was signed
    assert message["type"] == "job.succeeded"
    assert message["data"]["id"] == job.id and message["data"]["status"] == "succeeded"
    assert headers["webhook-id"].startswith(f"msg_{job.id.replace('-', '')}_")

    # What a receiver must refuse: a changed body, another key, an old message, a missing header.
    with pytest.raises(inferq.WebhookVerificationError):
        inferq.verify_webhook(body.replace(b"succeeded", b"failed"), headers, WEBHOOK_SECRET)
    with pytest.raises(inferq.WebhookVerificationError):
        inferq.verify_webhook(body, headers, "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY")
    with pytest.raises(inferq.WebhookVerificationError):
        inferq.verify_webhook(body, headers, WEBHOOK_SECRET, now=time.time() + 3600)
    partial = {k: v for k, v in headers.items() if k.lower() != "webhook-signature"}
    with pytest.raises(inferq.WebhookVerificationError):
        inferq.verify_webhook(body, partial, WEBHOOK_SECRET)
    # Header names are matched whatever their case; several signatures may be listed.
    upper = {k.upper(): v for k, v in headers.items()}
    upper["WEBHOOK-SIGNATURE"] = "v1,bm90LWl0 " + upper["WEBHOOK-SIGNATURE"]
    assert inferq.verify_webhook(body, upper, WEBHOOK_SECRET)["data"]["id"] == job.id


def test_sign_webhook_matches_the_standard_webhooks_example() -> None:
    # The test vector of the Standard Webhooks specification's reference libraries.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    sig = inferq.sign_webhook(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
