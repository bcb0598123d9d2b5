"""The local SMS stand-in answers as the provider does where followup depends on it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

from fastapi.testclient import TestClient
from regulars_cli.sms_sink import InboundText, app, inbound_form
from twilio.request_validator import RequestValidator

SEND = "/2010-04-01/Accounts/AClocal/Messages.json"
CUSTOMER = "+15555550100"


def test_an_inbound_text_has_the_providers_fields_and_a_signature_that_verifies() -> None:
    text = InboundText.model_validate(
        {"from": CUSTOMER, "to": "+15555550000", "text": "STOP", "url": "http://x/hooks"}
    )
    form = inbound_form(text, "AC123")
    assert (form["From"], form["To"], form["Body"], form["AccountSid"]) == (
        CUSTOMER,
        "+15555550000",
        "STOP",
        "AC123",
    )
    assert form["MessageSid"].startswith("SM") and form["MessageSid"] == form["SmsSid"]
    again = inbound_form(text.model_copy(update={"sid": "SMfixed"}), "AC123")
    assert again["MessageSid"] == "SMfixed"
    validator = RequestValidator("tok")
    signature = validator.compute_signature("http://x/hooks", form)
    assert validator.validate("http://x/hooks", form, signature)
    assert not RequestValidator("other").validate("http://x/hooks", form, signature)


def test_a_number_that_texted_stop_is_refused_with_21610_until_start(tmp_path: Path) -> None:
    client = TestClient(app(tmp_path))
    first = client.post(SEND, data={"To": CUSTOMER, "From": "+1555", "Body": "hi"})
    assert first.status_code == 201
    # nobody listens at the webhook: the provider's side still takes the STOP
    stop = {"from": CUSTOMER, "to": "+1555", "text": " stop ", "url": "http://127.0.0.1:9/x"}
    assert client.post("/local/inbound", json=stop).status_code == 502
    refused = client.post(SEND, data={"To": CUSTOMER, "From": "+1555", "Body": "hi"})
    assert refused.status_code == 400 and refused.json()["code"] == 21610
    client.post("/local/inbound", json={**stop, "text": "START"})
    assert (
        client.post(SEND, data={"To": CUSTOMER, "From": "+1555", "Body": "hi"}).status_code == 201
    )
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_every_post_is_a_text_whatever_token_it_carries(tmp_path: Path) -> None:
    """The provider has no idempotency token for sending: a POST sent again is a second
    text (I-Twilio-Idempotency-Token is a header of its webhooks, which it does not read)."""
    client = TestClient(app(tmp_path))
    token = {"I-Twilio-Idempotency-Token": "k1"}
    sids = {
        client.post(
            SEND, data={"To": CUSTOMER, "From": "+1555", "Body": "hi"}, headers=token
        ).json()["sid"]
        for _ in range(2)
    }
    assert len(sids) == 2 and len(list(tmp_path.glob("*.json"))) == 2


def test_texts_are_listed_as_the_provider_lists_them_newest_first_in_pages(
    tmp_path: Path,
) -> None:
    client = TestClient(app(tmp_path, step=0))
    sent = [
        client.post(SEND, data={"To": CUSTOMER, "From": "+1555", "Body": f"text {n}"}).json()
        for n in range(5)
    ]
    client.post(SEND, data={"To": "+15555550199", "From": "+1555", "Body": "not theirs"})
    today = datetime.now(UTC).date().isoformat()
    query = {"To": CUSTOMER, "From": "+1555", "DateSent>": today, "PageSize": "2"}
    page = client.get(SEND, params=query).json()
    seen = []
    while True:
        seen += page["messages"]
        if not page["next_page_uri"]:
            break
        page = client.get(page["next_page_uri"]).json()
    assert [m["sid"] for m in seen] == [m["sid"] for m in reversed(sent)]
    first = seen[-1]
    assert (first["to"], first["from"], first["body"], first["direction"]) == (
        CUSTOMER,
        "+1555",
        "text 0",
        "outbound-api",
    )
    assert parsedate_to_datetime(first["date_created"]).tzinfo is not None
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    later = client.get(SEND, params={**query, "DateSent>": tomorrow}).json()
    assert later["messages"] == [] and later["next_page_uri"] is None


def test_a_slow_provider_has_the_text_before_it_answers(tmp_path: Path) -> None:
    client = TestClient(app(tmp_path, answer_after=0.5, step=0))
    started = time.monotonic()
    answer = client.post(SEND, data={"To": CUSTOMER, "From": "+1555", "Body": "hi"})
    assert answer.status_code == 201 and time.monotonic() - started >= 0.5
    (listed,) = client.get(SEND, params={"To": CUSTOMER}).json()["messages"]
    assert listed["sid"] == answer.json()["sid"]
