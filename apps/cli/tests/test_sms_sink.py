"""The local SMS stand-in answers as the provider does where followup depends on it."""

from __future__ import annotations

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
    retried = client.post(
        SEND,
        data={"To": CUSTOMER, "From": "+1555", "Body": "hi"},
        headers={"I-Twilio-Idempotency-Token": "k1"},
    )
    same = client.post(
        SEND,
        data={"To": CUSTOMER, "From": "+1555", "Body": "hi"},
        headers={"I-Twilio-Idempotency-Token": "k1"},
    )
    assert retried.json()["sid"] == same.json()["sid"]
    # nobody listens at the webhook: the provider's side still takes the STOP
    stop = {"from": CUSTOMER, "to": "+1555", "text": " stop ", "url": "http://127.0.0.1:9/x"}
    assert client.post("/local/inbound", json=stop).status_code == 502
    refused = client.post(SEND, data={"To": CUSTOMER, "From": "+1555", "Body": "hi"})
    assert refused.status_code == 400 and refused.json()["code"] == 21610
    client.post("/local/inbound", json={**stop, "text": "START"})
    assert (
        client.post(SEND, data={"To": CUSTOMER, "From": "+1555", "Body": "hi"}).status_code == 201
    )
    assert len(list(tmp_path.glob("*.json"))) == 3
