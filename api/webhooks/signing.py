"""Standard Webhooks signatures (https://www.standardwebhooks.com): HMAC-SHA256 over
``"{webhook-id}.{webhook-timestamp}.{body}"`` with the base64-decoded part of a ``whsec_`` secret,
sent as ``webhook-signature: v1,<base64>``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "whsec_"


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    key = base64.b64decode(secret.removeprefix(PREFIX))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(secret: str, msg_id: str, timestamp: int, body: str, event: str) -> dict[str, str]:
    return {"content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, msg_id, timestamp, body), "xtc-event": event,
            "user-agent": "xtc-webhooks/1"}
