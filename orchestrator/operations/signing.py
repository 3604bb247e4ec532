"""Signatures of operation callbacks, and the callback token a caller hands out.

A handler signs the raw body of each callback with the secret it shares with the
caller: header ``Saga-Operation-Signature: sha256=<hex HMAC-SHA256 of the body>``.
The caller's ``callback_token`` names the run and the operation it waits for and
the endpoint it called, and carries an HMAC of those under the same secret, so a
handler can only complete operations that were started against it.

Token format: ``"op1."``, the URL-safe base64 (no padding) of the compact JSON array
``[workflow_id, run_id, operation_key, endpoint]``, ``"."``, and the URL-safe base64 of
HMAC-SHA256 over that base64 text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass

__all__ = [
    "SIGNATURE_HEADER",
    "CallbackToken",
    "InvalidCallbackError",
    "sign_body",
    "signature_valid",
]

SIGNATURE_HEADER = "Saga-Operation-Signature"
_SCHEME = "sha256="
_VERSION = "op1"
_MAX_TOKEN_CHARS = 4096


class InvalidCallbackError(ValueError):
    """A callback token or signature that does not verify; the message says why."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def _mac(secret: str, data: bytes) -> bytes:
    return hmac.new(secret.encode(), data, hashlib.sha256).digest()


def sign_body(secret: str, body: bytes) -> str:
    """The value of the signature header for ``body``."""
    return _SCHEME + _mac(secret, body).hex()


def signature_valid(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is ``body``'s signature under ``secret`` (constant-time)."""
    if not header or not header.startswith(_SCHEME):
        return False
    return hmac.compare_digest(sign_body(secret, body).encode(), header.strip().encode())


@dataclass(frozen=True, slots=True)
class CallbackToken:
    """The operation a callback is for: the waiting run, the operation's key in it
    (a deterministic uuid of the run) and the endpoint it was started on."""

    workflow_id: str
    run_id: str
    operation_key: str
    endpoint: str

    def encode(self, secret: str) -> str:
        """The token, MACed with ``secret`` (the endpoint's)."""
        fields = [self.workflow_id, self.run_id, self.operation_key, self.endpoint]
        body = _b64(json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode())
        return f"{_VERSION}.{body}.{_b64(_mac(secret, body.encode()))}"

    @classmethod
    def read(cls, token: object) -> tuple[CallbackToken, str, str]:
        """The token's fields, unverified, with its body and MAC text for :meth:`verify`
        (the endpoint it names says which secret to verify with)."""
        if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS:
            raise InvalidCallbackError("callback_token must be a string of at most 4096 characters")
        version, body, mac = [*token.split("."), "", "", ""][:3]
        if version != _VERSION or not body or not mac or token.count(".") != 2:
            raise InvalidCallbackError("not a callback token")
        try:
            fields = json.loads(_unb64(body).decode())
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise InvalidCallbackError("callback token is corrupt") from None
        if (
            not isinstance(fields, list)
            or len(fields) != 4
            or not all(isinstance(f, str) and f for f in fields)
        ):
            raise InvalidCallbackError("callback token is corrupt")
        return cls(*fields), body, mac

    @staticmethod
    def verify(secret: str, body: str, mac: str) -> bool:
        """Whether ``mac`` is the MAC of the token body ``body`` under ``secret``."""
        return hmac.compare_digest(_b64(_mac(secret, body.encode())).encode(), mac.encode())
