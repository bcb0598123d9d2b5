"""Pages from Jinja2 templates, the static files beside them, and the headers every page
carries (a strict Content-Security-Policy: scripts and styles from this origin only)."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, pass_context, select_autoescape
from jinja2.runtime import Context
from regulars_shop.contact import DEFAULT_COUNTRY, readable_phone

ENV = Environment(
    loader=PackageLoader("regulars_loyalty.entrypoints.console", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
        " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # a sign-in link is a credential in the URL: no page sends it on as a Referer
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
_TYPES[".svg"] = "image/svg+xml"
_TYPES[".txt"] = "text/plain; charset=utf-8"


def _load_static() -> dict[str, tuple[bytes, str]]:
    files: dict[str, tuple[bytes, str]] = {}
    root = resources.files("regulars_loyalty.entrypoints.console").joinpath("static")
    for entry in root.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in _TYPES:
            files[entry.name] = (entry.read_bytes(), _TYPES[suffix])
    return files


STATIC = _load_static()
#: in every static URL, so a new release is fetched and an old one cached for good
VERSION = hashlib.sha256(b"".join(body for body, _ in STATIC.values())).hexdigest()[:10]


def static_response(name: str) -> Response:
    found = STATIC.get(name)
    if found is None:
        return Response("not found", status_code=404, media_type="text/plain")
    body, media = found
    return Response(
        body,
        media_type=media,
        headers={
            "Cache-Control": "public, max-age=31536000, immutable",
            "X-Content-Type-Options": "nosniff",
        },
    )


def page(template: str, status: int = 200, **values: Any) -> HTMLResponse:
    html = ENV.get_template(template).render(asset_version=VERSION, **values)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def local(at: datetime | str | None, zone: ZoneInfo, fmt: str = "%a %d %b, %H:%M") -> str:
    if at is None:
        return ""
    when = at if isinstance(at, datetime) else datetime.fromisoformat(at)
    return when.astimezone(zone).strftime(fmt)


def money(cents: int | None) -> str:
    if cents is None:
        return ""
    return f"${cents / 100:,.2f}"


#: a stage as the shop says it
STAGE_WORDS = {
    "prospect": "Prospect",
    "customer": "Customer",
    "repeat": "Repeat customer",
    "loyal": "Loyal",
    "advocate": "Advocate",
    "at_risk": "At risk",
    "lapsed": "Lapsed",
    "lost": "Lost",
}


def stage_words(stage: str | None) -> str:
    return STAGE_WORDS.get(stage or "", stage or "")


def tel(phone: str | None) -> str:
    """A phone number as a tel: link's target (digits and the leading +)."""
    return re.sub(r"[^\d+]", "", phone or "")


@pass_context
def phone(context: Context, e164: str | None) -> str:
    """A number as staff read it: national in the shop's country ("(512) 555-0142"),
    international otherwise; the tel: link keeps E.164."""
    if not e164:
        return ""
    signed = context.get("signed")
    country = getattr(getattr(signed, "policy", None), "country", DEFAULT_COUNTRY)
    return readable_phone(e164, country)


ENV.filters["money"] = money
ENV.filters["phone"] = phone
ENV.filters["tel"] = tel
ENV.filters["stage"] = stage_words
