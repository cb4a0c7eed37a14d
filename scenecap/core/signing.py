"""Standard Webhooks signatures: v1,<base64 HMAC-SHA256(secret, id.timestamp.body)>."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from scenecap.core.errors import ScenecapError


class WebhookVerificationError(ScenecapError):
    status_code, code = 400, "WEBHOOK_SIGNATURE_INVALID"


def signature(secret: str, webhook_id: str, timestamp: int, body: str) -> str:
    """One `v1,<base64>` signature; the secret is `whsec_<base64 key>`."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets: list[str], webhook_id: str, timestamp: int, body: str) -> str:
    """The webhook-signature header: one signature per live secret, space-separated."""
    return " ".join(signature(secret, webhook_id, timestamp, body) for secret in secrets)


def verify_webhook(
    headers: Mapping[str, str],
    body: bytes | str,
    secret: str,
    *,
    tolerance_seconds: int = 300,
    now: float | None = None,
) -> dict[str, Any]:
    """Check a webhook's Standard Webhooks signature and age; return its parsed payload.

    Raises WebhookVerificationError when the headers are missing, the timestamp is outside
    the tolerance (replays), or no signature matches the secret.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    webhook_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp", "")
    signatures = lowered.get("webhook-signature", "").split()
    if not webhook_id or not stamp.isdigit() or not signatures:
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or signature")
    if abs((now if now is not None else time.time()) - int(stamp)) > tolerance_seconds:
        raise WebhookVerificationError("the webhook's timestamp is too old or in the future")
    text = body.decode() if isinstance(body, bytes) else body
    expected = signature(secret, webhook_id, int(stamp), text)
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise WebhookVerificationError("no signature matches the secret")
    payload: dict[str, Any] = json.loads(text)
    return payload
