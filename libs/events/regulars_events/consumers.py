"""Who reads which topic: each service's consumer group and the event families it
consumes, for the contract (the AsyncAPI document's receive operations).

The contract cannot import the services (they depend on it); this table says what their
bootstraps subscribe to, and a test holds each bootstrap to it
(apps/cli/tests/test_consumers_table.py), so it cannot drift from the code.
"""

from __future__ import annotations

from .topics import FAMILIES, dead_letter_topic, topics_of

#: service -> the event families whose topics it consumes
CONSUMES: dict[str, tuple[str, ...]] = {
    # webhooks: every family a shop may subscribe to; also its own connectors' echoes
    "intake": tuple(f for f in FAMILIES),
    "followup": (
        "shop",
        "customer",
        "consent",
        "service",
        "referral",
        "survey",
        "recovery_case",
        "review",
        "staff",
        "lifecycle",
    ),
    "feedback": ("shop", "customer", "service", "followup"),
    # the lifecycle projection and the console's timeline: everything about a customer
    "loyalty": tuple(f for f in FAMILIES),
}

SERVICES: tuple[str, ...] = tuple(CONSUMES)


def consumer_group(service: str) -> str:
    """The Kafka consumer group of a service's consumers (regulars_bus.consumer)."""
    return f"regulars-{service}"


def consumed_topics(service: str) -> tuple[str, ...]:
    return topics_of(*CONSUMES[service])


def dead_letter_topics() -> dict[str, str]:
    return {service: dead_letter_topic(service) for service in SERVICES}
