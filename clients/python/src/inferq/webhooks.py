"""Verifying inferq's webhook messages on the receiving side (the Standard Webhooks scheme).

inferq's workers sign each message with ``webhook-signature: v1,<base64 HMAC-SHA256 of
"<webhook-id>.<webhook-timestamp>.<body>">``, keyed by the decoded ``whsec_<base64>`` secret
(worker/src/webhooks/sign.rs). :func:`verify_webhook` checks the signature over the *raw* body
bytes, and the timestamp against replays.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any, Mapping

from .errors import WebhookVerificationError

__all__ = ["verify_webhook", "sign_webhook"]

#: How far a message's timestamp may be from now (seconds), as the specification suggests.
DEFAULT_TOLERANCE = 300


def _key(secret: str | bytes) -> bytes:
    if isinstance(secret, bytes):
        return secret
    raw = secret.strip()
    if raw.startswith("whsec_"):
        raw = raw[len("whsec_") :]
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError as e:
        raise WebhookVerificationError("the secret is not whsec_<base64>") from e


def sign_webhook(secret: str | bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for a message (``v1,<base64>``), as inferq computes it."""
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def verify_webhook(
    body: bytes | str,
    headers: Mapping[str, str],
    secret: str | bytes,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> dict[str, Any]:
    """Verifies a webhook message and returns its decoded body (``{"type", "timestamp", "data"}``).

    Args:
        body: the request body exactly as received (bytes; do not re-serialize parsed JSON).
        headers: the request headers (any mapping; names are matched case-insensitively).
        secret: the signing secret, ``whsec_<base64>`` (or the raw key bytes).
        tolerance: seconds the ``webhook-timestamp`` may differ from now (replay protection).
        now: the current Unix time (for tests).

    Raises:
        WebhookVerificationError: a header is missing, the timestamp is too old or too new, or
            no ``v1`` signature in ``webhook-signature`` matches.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id = lower["webhook-id"]
        ts_text = lower["webhook-timestamp"]
        signatures = lower["webhook-signature"]
    except KeyError as e:
        raise WebhookVerificationError(f"missing header {e.args[0]}") from None
    try:
        timestamp = int(ts_text)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance")
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    expected = sign_webhook(secret, msg_id, timestamp, raw).split(",", 1)[1]
    for candidate in signatures.split():
        version, _, sig = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(sig, expected):
            return json.loads(raw)
    raise WebhookVerificationError("no matching signature")
