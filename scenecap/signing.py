"""Standard Webhooks signatures: v1,<base64 HMAC-SHA256(secret, id.timestamp.body)>."""

from __future__ import annotations

import base64
import hashlib
import hmac


def signature(secret: str, webhook_id: str, timestamp: int, body: str) -> str:
    """One `v1,<base64>` signature; the secret is `whsec_<base64 key>`."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets: list[str], webhook_id: str, timestamp: int, body: str) -> str:
    """The webhook-signature header: one signature per live secret, space-separated."""
    return " ".join(signature(secret, webhook_id, timestamp, body) for secret in secrets)
