"""The SMS provider's webhooks (Twilio-compatible): texts customers send to our number,
and status callbacks for the texts we sent. Public paths: the provider's signature
(``X-Twilio-Signature``, keyed with ``SMS_API_TOKEN``) is the credential, and a request
without a good one is 403 with nothing recorded.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import Response
from regulars_runtime.http import Problem
from regulars_runtime.limits import Rate
from regulars_runtime.openapi import NO_NUL, PUBLIC
from regulars_runtime.service import ServiceContext, context

from .. import handlers
from ..adapters.sms import normalize_e164
from ..adapters.twilio_signature import TwilioSignatures
from ..domain.inbound_texts import InboundText

log = logging.getLogger(__name__)

router = APIRouter()

INBOUND_PATH = "/hooks/sms/inbound"
STATUS_PATH = "/hooks/sms/status"

#: the provider's form is a few hundred bytes (a text is at most 1,600 characters)
HOOK_BODY_LIMIT = 16 * 1024
# Every replica together (PostgreSQL), counted once the provider's signature is good, so
# forged posts cannot use up the provider's allowance (they count as failures of their
# sender's address instead).
#: far above what customers text, low enough to shed a flood
INBOUND = Rate("inbound texts", 50.0, 200.0)
#: two or three callbacks per text we send, and the provider does not retry one we
#: refuse, so a month's reminders going out at once must pass
STATUS = Rate("status callbacks", 300.0, 3000.0)
#: per customer's number: a person texts a few times a minute at most
SENDER = Rate("texts from one number", 1.0, 10.0)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


@dataclass
class SmsHooks:
    """What the hooks hold: the signature check (None: no SMS account configured) and
    their rate limits."""

    signatures: TwilioSignatures | None
    inbound: Rate = field(default=INBOUND)
    status: Rate = field(default=STATUS)
    senders: Rate = field(default=SENDER)


def hooks_of(ctx: ServiceContext[Any]) -> SmsHooks:
    found = ctx.front
    assert isinstance(found, SmsHooks), "followup's bootstrap wires SmsHooks"
    return found


async def _limit(ctx: ServiceContext[Any], rate: Rate, key: str) -> None:
    if ctx.limits is not None:
        await ctx.limits.enforce(rate, key)


async def _signed_form(request: Request, hooks: SmsHooks) -> dict[str, str]:
    """The form the provider posted, once its signature is good (403 otherwise)."""
    ctx = context(request)
    ctx.refuse_known_guesser(request.scope)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise Problem(415, "the provider posts application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > HOOK_BODY_LIMIT:
        raise Problem(413, f"request body is over the limit of {HOOK_BODY_LIMIT} bytes")
    try:
        form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        raise Problem(400, "the body is not a UTF-8 form") from None
    signature = request.headers.get("x-twilio-signature", "")
    if hooks.signatures is None:
        raise Problem(403, "no SMS account is configured here (SMS_API_URL, SMS_API_TOKEN)")
    if not hooks.signatures.valid(request.url.path, request.url.query, form, signature):
        await ctx.count_failure(request.scope)
        raise Problem(
            403,
            "missing or bad X-Twilio-Signature (HMAC of the public URL and the form, keyed"
            " with the account's auth token)",
        )
    await _limit(ctx, hooks.status if request.url.path == STATUS_PATH else hooks.inbound, "all")
    return form


def _required(form: dict[str, str], *names: str) -> list[str]:
    missing = [n for n in names if not form.get(n)]
    if missing:
        raise Problem(
            422,
            f"missing {', '.join(missing)}",
            errors=[{"field": n, "message": "required"} for n in missing],
        )
    too_long = [n for n in names if len(form[n]) > 200]
    if too_long:
        raise Problem(
            422,
            f"{too_long[0]}: at most 200 characters",
            errors=[{"field": n, "message": "at most 200 characters"} for n in too_long],
        )
    return [form[n] for n in names]


def _number(value: str) -> str:
    """E.164 when it is a phone number; as it came otherwise (a short code, a channel
    address such as ``whatsapp:+1...``), which then matches no customer."""
    try:
        return normalize_e164(value)
    except ValueError:
        return value


_FORM_FIELD = {"type": "string", "maxLength": 1600}

_INBOUND_FORM = {
    "type": "object",
    "required": ["MessageSid", "From", "To"],
    "properties": {
        "MessageSid": {**_FORM_FIELD, "minLength": 1, "maxLength": 200},
        "AccountSid": {**_FORM_FIELD, "maxLength": 200},
        "From": {**_FORM_FIELD, "minLength": 1, "maxLength": 200},
        "To": {**_FORM_FIELD, "minLength": 1, "maxLength": 200},
        "Body": _FORM_FIELD,
    },
    "additionalProperties": {"type": "string"},
    # the provider's own names; a NUL in any part of a request is refused before this
    "propertyNames": {"pattern": NO_NUL},
}

_STATUS_FORM = {
    "type": "object",
    "required": ["MessageSid", "MessageStatus"],
    "properties": {
        "MessageSid": {**_FORM_FIELD, "minLength": 1, "maxLength": 200},
        "MessageStatus": {
            "type": "string",
            "enum": [
                "accepted",
                "scheduled",
                "queued",
                "sending",
                "sent",
                "delivered",
                "undelivered",
                "failed",
                "read",
                "canceled",
            ],
        },
        "ErrorCode": {"type": "string", "maxLength": 20},
        "AccountSid": {**_FORM_FIELD, "maxLength": 200},
    },
    "additionalProperties": {"type": "string"},
    # the provider's own names; a NUL in any part of a request is refused before this
    "propertyNames": {"pattern": NO_NUL},
}

_SIGNATURE = {
    "name": "X-Twilio-Signature",
    "in": "header",
    "required": True,
    "description": "base64 HMAC-SHA1 of the public URL and the sorted form, keyed with"
    " the account's auth token",
    "schema": {"type": "string", "maxLength": 200},
}

_REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {},
    403: {"description": "Missing or bad signature: nothing was recorded"},
    413: {},
    415: {},
    422: {},
    429: {},
}


@router.post(
    INBOUND_PATH,
    tags=["sms provider"],
    summary="A text a customer sent to our number (Twilio-compatible inbound webhook)",
    description="Becomes CustomerReplied from the customer with that number, for the shop"
    " that last texted them (an opt-out or START: every shop that texted them). STOP stops"
    " at once. A retried MessageSid is acted on once. Answers empty TwiML: a confirmation"
    " or HELP answer goes as its own message.",
    response_class=Response,
    responses={
        200: {"content": {"application/xml": {"schema": {"type": "string"}}}},
        **_REFUSALS,
    },
    openapi_extra={
        **PUBLIC,
        "parameters": [_SIGNATURE],
        "requestBody": {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": _INBOUND_FORM}},
        },
    },
)
async def inbound_text(request: Request) -> Response:
    ctx = context(request)
    hooks = hooks_of(ctx)
    form = await _signed_form(request, hooks)
    sid, sender, to = _required(form, "MessageSid", "From", "To")
    sender = _number(sender)
    await _limit(ctx, hooks.senders, sender)
    text = InboundText(
        message_sid=sid,
        account_sid=form.get("AccountSid", "")[:200],
        from_number=sender,
        to_number=_number(to),
        body=form.get("Body", ""),
    )
    result = await ctx.bus.handle(handlers.texts.ReceiveText(text))
    log.info(
        "inbound text",
        extra={
            "message_sid": sid,
            "duplicate": result.duplicate,
            "replies": len(result.replied),
        },
    )
    return Response(EMPTY_TWIML, media_type="application/xml")


@router.post(
    STATUS_PATH,
    tags=["sms provider"],
    summary="What became of a text we sent (Twilio-compatible status callback)",
    description="delivered, undelivered or failed moves the message there, once and never"
    " back; other statuses change nothing.",
    response_class=Response,
    responses={
        200: {"content": {"application/xml": {"schema": {"type": "string"}}}},
        **_REFUSALS,
    },
    openapi_extra={
        **PUBLIC,
        "parameters": [
            _SIGNATURE,
            {
                "name": "message",
                "in": "query",
                "required": False,
                "description": "our message id, in the StatusCallback URL we gave",
                "schema": {"type": "string", "maxLength": 64},
            },
        ],
        "requestBody": {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": _STATUS_FORM}},
        },
    },
)
async def status_callback(request: Request) -> Response:
    ctx = context(request)
    form = await _signed_form(request, hooks_of(ctx))
    sid, status = _required(form, "MessageSid", "MessageStatus")
    code = form.get("ErrorCode", "")
    error_code = int(code) if code.isdigit() and len(code) < 10 else None
    message_id = None
    with contextlib.suppress(ValueError):
        message_id = uuid.UUID(request.query_params.get("message", ""))
    known = await ctx.bus.handle(
        handlers.texts.RecordCarrierReport(sid, status.lower()[:40], error_code, message_id)
    )
    if not known:
        log.info("status callback for a text not ours", extra={"message_sid": sid})
    return Response(EMPTY_TWIML, media_type="application/xml")
