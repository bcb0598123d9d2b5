"""Secrets the shop gave us or we gave it, encrypted at rest.

Fernet (AES-128-CBC with HMAC-SHA256) under a key derived from one of the operator's
settings and a purpose, so a copy of the database alone cannot sign as us or as a shop
system, and a connector's secret never opens under the webhooks' key.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken


class SecretBox:
    def __init__(self, key: str, purpose: bytes = b"") -> None:
        # any passphrase of the operator's becomes a Fernet key: 32 bytes, urlsafe base64
        digest = hashlib.sha256(purpose + key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, secret: str) -> bytes:
        return self._fernet.encrypt(secret.encode())

    def open(self, sealed: bytes) -> str | None:
        """The secret; None when it was sealed under another key."""
        try:
            return self._fernet.decrypt(bytes(sealed)).decode()
        except InvalidToken:
            return None

    def __repr__(self) -> str:
        return "SecretBox(<key>)"
