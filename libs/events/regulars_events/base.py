"""The base every event in the catalogue derives from.

An event's data is a pydantic model; its CloudEvents type (``regulars.<family>.<name>.v<N>``)
is a class attribute, so the type, the topic and the JSON Schema all come from one place.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

EVENT_TYPES: dict[str, type[Event]] = {}


class Event(BaseModel):
    # Unknown fields a shop sends are kept, and changes within a version are additive only,
    # so readers must tolerate fields they do not know yet.
    model_config = ConfigDict(extra="allow", frozen=True)

    type: ClassVar[str]
    #: the data field that names the customer (CloudEvents ``subject``, half the Kafka key)
    subject_field: ClassVar[str | None] = "customer_id"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        event_type = cls.__dict__.get("type")
        if isinstance(event_type, str):
            if event_type in EVENT_TYPES:
                raise TypeError(f"event type {event_type} is declared twice")
            EVENT_TYPES[event_type] = cls

    @classmethod
    def family(cls) -> str:
        return family_of(cls.type)

    def subject(self) -> str | None:
        if self.subject_field is None:
            return None
        value = getattr(self, self.subject_field, None)
        return None if value is None else str(value)


def family_of(event_type: str) -> str:
    """``regulars.service.completed.v1`` -> ``service``."""
    parts = event_type.split(".")
    if len(parts) != 4 or parts[0] != "regulars":
        raise ValueError(f"not a regulars event type: {event_type!r}")
    return parts[1]


def event_class(event_type: str) -> type[Event]:
    try:
        return EVENT_TYPES[event_type]
    except KeyError:
        raise KeyError(f"unknown event type {event_type!r}") from None
