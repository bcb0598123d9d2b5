"""Event family -> Kafka topic, and the partition key.

One topic per event family; the key is ``<shop id>:<customer id>`` so that all of one
customer's events land in one partition, in order. Events about a shop as a whole are
keyed by the shop id alone.
"""

from __future__ import annotations

from .base import family_of

#: every event family; a topic per family (``regulars.<family>``)
FAMILIES: tuple[str, ...] = (
    "shop",
    "customer",
    "consent",
    "service",
    "appointment",
    "invoice",
    "service_plan",
    "referral",
    "followup",
    "message",
    "reminder",
    "survey",
    "feedback",
    "recovery_case",
    "review",
    "staff",
    "lifecycle",
)


def topic_for(event_type: str) -> str:
    family = family_of(event_type)
    if family not in FAMILIES:
        raise ValueError(f"event family {family!r} has no topic")
    return f"regulars.{family}"


def all_topics() -> list[str]:
    return [f"regulars.{family}" for family in FAMILIES]


def topics_of(*families: str) -> tuple[str, ...]:
    """The topics of these families (what a service publishes), each checked to exist."""
    for family in families:
        if family not in FAMILIES:
            raise ValueError(f"event family {family!r} has no topic")
    return tuple(f"regulars.{family}" for family in families)


def dead_letter_topic(consumer: str) -> str:
    """Where a consumer group parks what it could not apply, with the error in headers."""
    return f"regulars.dead_letter.{consumer}"


def partition_key(shop_id: str, subject: str | None) -> bytes:
    return (shop_id if subject is None else f"{shop_id}:{subject}").encode()
