"""A survey link's token, made from the survey's id under a key only feedback (which
checks it) and followup (which sends it) hold. Pure.

The link is a customer's credential for a public page, so it never travels on the bus:
feedback announces a survey by its id and the page's address, and followup, as it asks
for the message, composes the link the customer gets. The token is an HMAC, so nobody
without the key can make one from an id; feedback keeps the tokens it made, so a link
stays good for as long as its survey does whatever happens to the key afterwards.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid


def survey_token(key: bytes, shop_id: uuid.UUID | str, survey_id: uuid.UUID | str) -> str:
    """43 URL-safe characters (256 bits), as unguessable as a random token."""
    mac = hmac.new(key, f"survey link\0{shop_id}\0{survey_id}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def survey_page(public_url: str) -> str:
    """Where survey links lead, without their token (not a secret: any link shows it)."""
    return f"{public_url.rstrip('/')}/s/"


def survey_link(page: str, token: str) -> str:
    return f"{page}{token}"
