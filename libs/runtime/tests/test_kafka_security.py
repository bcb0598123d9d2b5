"""Kafka over TLS and SASL: the configuration every real aiokafka client ends up with.

The certificates are real (made with openssl for each run): the SSLContext a client gets
must trust our CA, verify the broker's name, and present our client certificate.
"""

from __future__ import annotations

import re
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from regulars_bus.kafka import KafkaConfig, admin_client, consumer, producer
from regulars_runtime.settings import KafkaSettings, ServiceSettings, load

SECURITY_VARIABLES = (
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_CAFILE",
    "KAFKA_SSL_CERTFILE",
    "KAFKA_SSL_KEYFILE",
    "KAFKA_SSL_PASSWORD",
)


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECURITY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA and a client certificate it signed, whose key is encrypted with a password."""
    d = tmp_path_factory.mktemp("pki")
    ca_key, ca = d / "ca.key", d / "ca.crt"
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=regulars-test-cluster-ca", "-keyout", str(ca_key), "-out", str(ca),
    )  # fmt: skip
    key, csr, cert = d / "user.key", d / "user.csr", d / "user.crt"
    openssl(
        "req", "-newkey", "rsa:2048", "-subj", "/CN=regulars-followup",
        "-passout", "pass:key-secret", "-keyout", str(key), "-out", str(csr),
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-out", str(cert),
    )  # fmt: skip
    return {"ca": ca, "key": key, "cert": cert}


def settings_of(client: Any) -> Any:
    """The connection settings aiokafka keeps (its AIOKafkaClient) for any of the three."""
    if isinstance(client, AIOKafkaProducer):
        return client.client
    return client._client


async def clients(config: KafkaConfig) -> list[Any]:
    made = [
        producer(config, "test"),
        consumer(config, "regulars-test"),
        admin_client(config, "test-admin"),
    ]
    assert [type(c) for c in made] == [AIOKafkaProducer, AIOKafkaConsumer, AIOKafkaAdminClient]
    return made


async def close(made: list[Any]) -> None:
    # built, never started: nothing to stop but the producer's and consumer's loops' notes
    for client in made:
        if isinstance(client, AIOKafkaAdminClient):
            await client.close()
        else:
            await client.stop()


async def test_plaintext_is_the_default_and_has_no_tls_nor_sasl() -> None:
    made = await clients(KafkaConfig("127.0.0.1:9092"))
    for client in made:
        s = settings_of(client)
        assert s._security_protocol == "PLAINTEXT"
        assert s._ssl_context is None and s._sasl_mechanism == "PLAIN"  # aiokafka's unused default
        assert s._sasl_plain_password is None
    await close(made)


async def test_ssl_trusts_the_ca_and_presents_the_client_certificate(
    pki: dict[str, Path],
) -> None:
    config = KafkaConfig(
        "kafka:9093",
        security_protocol="SSL",
        ssl_cafile=str(pki["ca"]),
        ssl_certfile=str(pki["cert"]),
        ssl_keyfile=str(pki["key"]),
        ssl_password="key-secret",
    )
    made = await clients(config)
    contexts = {id(settings_of(c)._ssl_context) for c in made}
    assert len(contexts) == 1, "one context for every client of the process"
    for client in made:
        s = settings_of(client)
        assert s._security_protocol == "SSL"
        context: ssl.SSLContext = s._ssl_context
        assert isinstance(context, ssl.SSLContext)
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        issuers = [dict(x[0] for x in c["subject"]) for c in context.get_ca_certs()]
        assert {"commonName": "regulars-test-cluster-ca"} in issuers
    await close(made)


def test_a_wrong_key_password_fails_at_once(pki: dict[str, Path]) -> None:
    with pytest.raises(ssl.SSLError):
        producer(
            KafkaConfig(
                "kafka:9093",
                security_protocol="SSL",
                ssl_cafile=str(pki["ca"]),
                ssl_certfile=str(pki["cert"]),
                ssl_keyfile=str(pki["key"]),
                ssl_password="not-the-password",
            ),
            "test",
        )


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"])
async def test_sasl_ssl_sends_the_user_over_tls(mechanism: str, pki: dict[str, Path]) -> None:
    config = KafkaConfig(
        "regulars-kafka-kafka-bootstrap:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism=mechanism,
        sasl_username="regulars-followup",
        sasl_password="scram-secret",
        ssl_cafile=str(pki["ca"]),
    )
    made = await clients(config)
    for client in made:
        s = settings_of(client)
        assert s._security_protocol == "SASL_SSL"
        assert s._sasl_mechanism == mechanism
        assert (s._sasl_plain_username, s._sasl_plain_password) == (
            "regulars-followup",
            "scram-secret",
        )
        assert isinstance(s._ssl_context, ssl.SSLContext)
        assert s._ssl_context.get_ca_certs()
    await close(made)
    assert "scram-secret" not in repr(config) and "scram-secret" not in str(config)


async def test_sasl_plaintext_has_no_tls_context() -> None:
    config = KafkaConfig(
        "kafka:9092",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="u",
        sasl_password="p",
    )
    made = await clients(config)
    for client in made:
        s = settings_of(client)
        assert s._security_protocol == "SASL_PLAINTEXT" and s._ssl_context is None
        assert s._sasl_mechanism == "SCRAM-SHA-256"
    await close(made)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"security_protocol": "TLS"}, "KAFKA_SECURITY_PROTOCOL must be one of"),
        (
            {"security_protocol": "SASL_SSL", "sasl_username": "u", "sasl_password": "p"},
            "KAFKA_SASL_MECHANISM is required with SASL_SSL",
        ),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-1"},
            "KAFKA_SASL_MECHANISM must be one of",
        ),
        (
            {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"},
            "KAFKA_SASL_PASSWORD is required with SASL_PLAINTEXT",
        ),
        ({"sasl_password": "p"}, "KAFKA_SASL_PASSWORD set but KAFKA_SECURITY_PROTOCOL is"),
        ({"ssl_cafile": "/ca.crt"}, "KAFKA_SSL_CAFILE set but KAFKA_SECURITY_PROTOCOL is"),
        (
            {"security_protocol": "SSL", "ssl_keyfile": "/user.key"},
            "KAFKA_SSL_KEYFILE needs KAFKA_SSL_CERTFILE",
        ),
    ],
)
def test_combinations_that_cannot_work_are_refused(values: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=named) as refused:
        KafkaConfig("kafka:9092", **values)  # type: ignore[arg-type]
    assert "'p'" not in str(refused.value)


class Followup(ServiceSettings):
    service = "followup"


def test_the_settings_read_the_environment_and_hide_the_password(
    monkeypatch: pytest.MonkeyPatch, pki: dict[str, Path]
) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "regulars-followup")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "from-the-secret")
    monkeypatch.setenv("KAFKA_SSL_CAFILE", str(pki["ca"]))
    settings = load(Followup, database_url="postgresql://db/regulars")
    kafka = settings.kafka
    assert (kafka.security_protocol, kafka.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (kafka.sasl_username, kafka.sasl_password) == ("regulars-followup", "from-the-secret")
    assert kafka.ssl_cafile == str(pki["ca"])
    assert "from-the-secret" not in repr(settings) and "from-the-secret" not in repr(
        KafkaSettings()
    )


def test_a_bad_combination_stops_the_service_naming_the_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "from-the-secret")
    monkeypatch.setenv("KAFKA_SSL_CAFILE", "/nowhere/ca.crt")
    with pytest.raises(SystemExit) as stopped:
        load(Followup, database_url="postgresql://db/regulars")
    message = str(stopped.value)
    assert message.startswith("followup: bad settings")
    assert "KAFKA_SASL_MECHANISM is required with SASL_SSL" in message
    assert "KAFKA_SASL_USERNAME is required" in message
    assert "KAFKA_SSL_CAFILE: no file /nowhere/ca.crt" in message
    assert "from-the-secret" not in message


def test_every_kafka_client_is_made_where_the_security_settings_are_applied() -> None:
    """A producer, consumer or admin client made anywhere else would reach the brokers on
    PLAINTEXT, which a secured cluster refuses (or, worse, answers)."""
    root = Path(__file__).resolve().parents[3]
    made_here = root / "libs" / "bus" / "regulars_bus" / "kafka.py"
    pattern = re.compile(r"\bAIOKafka(Producer|Consumer|AdminClient)\(")
    elsewhere = [
        str(path.relative_to(root))
        for top in ("libs", "apps", "services")
        for path in (root / top).rglob("*.py")
        if "tests" not in path.parts and path != made_here and pattern.search(path.read_text())
    ]
    assert elsewhere == []
    assert len(pattern.findall(made_here.read_text())) == 3
