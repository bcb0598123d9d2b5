"""The SMS provider's webhook signature (``X-Twilio-Signature``), checked with the
``twilio`` library's RequestValidator: HMAC-SHA1 of the URL the provider called and the
sorted form fields, keyed with the account's auth token.

The URL is the public one the provider was given (``FOLLOWUP_PUBLIC_URL`` + path and
query), never the one this process sees behind a proxy or an ingress.
"""

from __future__ import annotations

from collections.abc import Mapping

from twilio.request_validator import RequestValidator


class TwilioSignatures:
    def __init__(self, auth_token: str, public_url: str) -> None:
        if not auth_token:
            raise ValueError("auth_token is required")
        self._validator = RequestValidator(auth_token)
        self.public_url = public_url.rstrip("/")

    def __repr__(self) -> str:
        # The auth token never appears where the checker is printed.
        return f"TwilioSignatures(public_url={self.public_url!r})"

    def url_of(self, path: str, query: str) -> str:
        return f"{self.public_url}{path}" + (f"?{query}" if query else "")

    def valid(self, path: str, query: str, form: Mapping[str, str], signature: str) -> bool:
        if not signature:
            return False
        return bool(self._validator.validate(self.url_of(path, query), dict(form), signature))

    def sign(self, path: str, query: str, form: Mapping[str, str]) -> str:
        """What the provider would send (for tests and the local stand-in)."""
        return str(self._validator.compute_signature(self.url_of(path, query), dict(form)))
