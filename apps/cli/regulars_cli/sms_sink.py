"""A local stand-in for a Twilio-compatible SMS gateway, for `make run` and the tests.

Real texts need a paid gateway; on one machine, messages are kept as JSON files (one per
message, in arrival order) so a person can read what customers would have received. It
behaves as the real API does where followup depends on it:

- every POST to Messages.json that it takes is a text, as with the provider: its API
  has no idempotency token for creating messages (``I-Twilio-Idempotency-Token`` is a
  header the provider puts on the webhooks it sends), so a POST sent again is a second
  text to the customer, and this stand-in keeps both;
- the text exists from the moment the POST is read: ``--answer-after SECONDS`` makes the
  provider slow to answer (the text is made, the answer comes late or, for a sender that
  gave up, never); ``GET Messages.json`` lists the texts as the provider does, newest
  first, filtered by ``To``, ``From`` and ``DateSent`` (``DateSent>=``, ``DateSent<=``,
  ``DateSent=``, by day in UTC), paged with ``PageSize`` and ``next_page_uri``;
- given a StatusCallback, it posts signed status callbacks there (``sent``, then
  ``delivered``; ``undelivered`` with error 30003 for a number listed with
  ``--unreachable``, ``failed`` with error 30008 for one listed with ``--failing``), as
  the provider does when the carrier reports;
- it plays a customer: ``POST /local/inbound`` (what `regulars sms reply` calls) posts a
  signed inbound text to the webhook URL given, as the provider does when a text arrives;
- as the provider's default opt-out handling does, a customer who texted STOP (or
  STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT) is blocked: a send to them is
  refused with error 21610 until they text START, UNSTOP or YES. The provider's own
  confirmation is not kept here: followup (``SMS_PROVIDER_CONFIRMS_OPT_OUT``, true by
  default) leaves it to the provider, so nothing to that number appears in the folder.

Signatures are ``X-Twilio-Signature`` computed by the ``twilio`` library with the auth
token (``SMS_API_TOKEN``, "local" by default, as followup defaults to in embedded mode).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
import uuid
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from twilio.request_validator import RequestValidator

log = logging.getLogger("regulars.sms_sink")

#: the auth token followup takes in embedded mode when SMS_API_TOKEN is not set: a
#: stand-in's, worthless anywhere else
LOCAL_TOKEN = "local"  # noqa: S105

#: the provider's default opt-out and opt-in keywords (the whole text, any case)
OPT_OUT_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
OPT_IN_WORDS = frozenset({"START", "UNSTOP", "YES"})

#: the carrier's delay between the provider's steps, short enough for tests
STEP_SECONDS = 0.2


class InboundText(BaseModel):
    """A customer's text, as their phone would send it."""

    from_: str = Field(alias="from", min_length=1, max_length=32)
    to: str = Field(min_length=1, max_length=32)
    text: str = Field(max_length=1600)
    url: str = Field(min_length=1, max_length=2000, description="the inbound webhook")
    sid: str | None = Field(None, max_length=64, description="a MessageSid to send again")


def inbound_form(text: InboundText, account: str) -> dict[str, str]:
    """The fields the provider posts for an incoming text."""
    sid = text.sid or "SM" + uuid.uuid4().hex
    return {
        "ToCountry": "US",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "SmsSid": sid,
        "SmsStatus": "received",
        "Body": text.text,
        "To": text.to,
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": account,
        "From": text.from_,
        "ApiVersion": "2010-04-01",
    }


async def post_signed(
    http: httpx.AsyncClient, validator: RequestValidator, url: str, form: dict[str, str]
) -> httpx.Response:
    signature = validator.compute_signature(url, form)
    return await http.post(url, data=form, headers={"X-Twilio-Signature": signature})


def texts(folder: Path) -> list[dict[str, Any]]:
    """Every text taken, as kept in the folder (what a person reads, and what is listed)."""
    found = []
    for path in folder.glob("*.json"):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # being written
    return found


def _rfc2822(at: float) -> str:
    return formatdate(at, usegmt=True).replace("GMT", "+0000")


def resource(record: dict[str, Any], step: float) -> dict[str, Any]:
    """A text as the provider's Message resource shows it."""
    created = float(record["received_at"])
    sent = created + step
    return {
        "sid": record["sid"],
        "account_sid": record.get("account"),
        "to": record.get("to"),
        "from": record.get("from"),
        "body": record.get("body"),
        "direction": "outbound-api",
        "status": "sent" if time.time() >= sent else "queued",
        "num_segments": "1",
        "date_created": _rfc2822(created),
        "date_updated": _rfc2822(created),
        "date_sent": _rfc2822(sent) if time.time() >= sent else None,
        "error_code": None,
        "error_message": None,
        "api_version": "2010-04-01",
        "uri": f"/2010-04-01/Accounts/{record.get('account')}/Messages/{record['sid']}.json",
    }


def selected(record: dict[str, Any], query: dict[str, str], step: float) -> bool:
    """The provider's list filters: To, From, and DateSent by UTC day (``DateSent>``,
    ``DateSent<`` as the keys of ``DateSent>=`` and ``DateSent<=``)."""
    if "To" in query and record.get("to") != query["To"]:
        return False
    if "From" in query and record.get("from") != query["From"]:
        return False
    bounds = [query.get(k) for k in ("DateSent>", "DateSent<", "DateSent")]
    if not any(bounds):
        return True
    sent_at = float(record["received_at"]) + step
    if time.time() < sent_at:
        return False  # queued: not sent yet, so no DateSent to match
    day = datetime.fromtimestamp(sent_at, UTC).date().isoformat()
    after, before, on = bounds
    return (not after or day >= after) and (not before or day <= before) and (not on or day == on)


def app(
    folder: Path,
    *,
    auth_token: str = LOCAL_TOKEN,
    account: str = "AClocal",
    unreachable: frozenset[str] = frozenset(),
    failing: frozenset[str] = frozenset(),
    step: float = STEP_SECONDS,
    answer_after: float = 0.0,
) -> FastAPI:
    folder.mkdir(parents=True, exist_ok=True)
    blocked: set[str] = set()
    validator = RequestValidator(auth_token)
    sink = FastAPI(title="Regulars local SMS gateway")
    background: set[asyncio.Task[None]] = set()

    def outcome(number: str) -> tuple[str, str | None]:
        if number in unreachable:
            return "undelivered", "30003"  # unreachable destination handset
        if number in failing:
            return "failed", "30008"  # unknown error
        return "delivered", None

    async def report(url: str, form: dict[str, str]) -> None:
        final, code = outcome(form["To"])
        async with httpx.AsyncClient(timeout=10) as http:
            for status in ("sent", final):
                await asyncio.sleep(step)
                fields = {**form, "MessageStatus": status, "SmsStatus": status}
                if code and status == final:
                    fields["ErrorCode"] = code
                try:
                    await post_signed(http, validator, url, fields)
                except httpx.HTTPError as exc:
                    # The provider does not retry status callbacks either.
                    log.warning("status callback to %s failed: %s", url, exc)

    @sink.post("/2010-04-01/Accounts/{account_sid}/Messages.json")
    async def send(account_sid: str, request: Request) -> JSONResponse:
        # The gateway's API is form-encoded; parsed here without a multipart dependency.
        fields = parse_qs((await request.body()).decode(), keep_blank_values=True)
        form = {k: v[0] for k, v in fields.items()}
        if form.get("To") in blocked:
            return JSONResponse(
                {
                    "code": 21610,
                    "message": "Attempt to send to unsubscribed recipient",
                    "more_info": "https://www.twilio.com/docs/errors/21610",
                    "status": 400,
                },
                status_code=400,
            )
        sid = "SM" + uuid.uuid4().hex
        now = time.time()
        record = {
            "sid": sid,
            "account": account_sid,
            "to": form.get("To"),
            "from": form.get("From"),
            "body": form.get("Body"),
            "status_callback": form.get("StatusCallback"),
            "received_at": now,
        }
        (folder / f"{time.time_ns()}-{sid}.json").write_text(json.dumps(record, indent=2))
        callback = form.get("StatusCallback")
        if callback:
            common = {
                "MessageSid": sid,
                "SmsSid": sid,
                "AccountSid": account_sid,
                "From": form.get("From", ""),
                "To": form.get("To", ""),
                "ApiVersion": "2010-04-01",
            }
            task = asyncio.create_task(report(callback, common))
            background.add(task)
            task.add_done_callback(background.discard)
        if answer_after:
            # made already; the answer is what is slow (a sender that gives up never sees it)
            await asyncio.sleep(answer_after)
        return JSONResponse(resource(record, step), status_code=201)

    @sink.get("/2010-04-01/Accounts/{account_sid}/Messages.json")
    async def listed(account_sid: str, request: Request) -> JSONResponse:
        query = dict(request.query_params)
        try:
            size = max(1, min(1000, int(query.get("PageSize", "50"))))
            page = max(0, int(query.get("Page", "0")))
        except ValueError:
            return JSONResponse({"code": 20001, "message": "bad paging"}, status_code=400)
        matching = [
            r
            for r in reversed(sorted(texts(folder), key=lambda r: float(r["received_at"])))
            if r.get("account") == account_sid and selected(r, query, step)
        ]
        chunk = matching[page * size : (page + 1) * size]
        path = f"/2010-04-01/Accounts/{account_sid}/Messages.json"

        def page_uri(number: int) -> str:
            return f"{path}?{urlencode({**query, 'PageSize': size, 'Page': number})}"

        more = (page + 1) * size < len(matching)
        return JSONResponse(
            {
                "messages": [resource(r, step) for r in chunk],
                "page": page,
                "page_size": size,
                "start": page * size,
                "end": page * size + max(len(chunk) - 1, 0),
                "uri": page_uri(page),
                "first_page_uri": page_uri(0),
                "previous_page_uri": page_uri(page - 1) if page else None,
                "next_page_uri": page_uri(page + 1) if more else None,
            }
        )

    @sink.post("/local/inbound")
    async def inbound(text: InboundText) -> JSONResponse:
        form = inbound_form(text, account)
        keyword = text.text.strip().upper()
        if keyword in OPT_OUT_WORDS:
            blocked.add(text.from_)
        elif keyword in OPT_IN_WORDS:
            blocked.discard(text.from_)
        async with httpx.AsyncClient(timeout=10) as http:
            try:
                answer = await post_signed(http, validator, text.url, form)
            except httpx.HTTPError as exc:
                return JSONResponse(
                    {"message_sid": form["MessageSid"], "error": f"{type(exc).__name__}: {exc}"},
                    status_code=502,
                )
        result: dict[str, Any] = {
            "message_sid": form["MessageSid"],
            "status_code": answer.status_code,
            "answer": answer.text[:2000],
        }
        return JSONResponse(result)

    return sink


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument(
        "--unreachable",
        action="append",
        default=[],
        help="a number whose texts the carrier reports undelivered (repeatable)",
    )
    parser.add_argument(
        "--answer-after",
        type=float,
        default=0.0,
        help="answer each send this many seconds after taking it (a slow provider)",
    )
    parser.add_argument(
        "--failing",
        action="append",
        default=[],
        help="a number whose texts the provider reports failed (repeatable)",
    )
    args = parser.parse_args()
    # The token from the environment, never the command line (ps shows arguments).
    sink = app(
        args.dir,
        auth_token=os.environ.get("SMS_API_TOKEN") or LOCAL_TOKEN,
        account=os.environ.get("SMS_ACCOUNT_SID") or "AClocal",
        unreachable=frozenset(args.unreachable),
        failing=frozenset(args.failing),
        answer_after=args.answer_after,
    )
    uvicorn.run(sink, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
