"""A customer's contact data checked and made usable before it is accepted. Pure.

Every service downstream texts, calls and matches replies by the customer's number, and
times its messages by their time zone and state: intake stores and emits numbers in
E.164 only, and refuses (422, naming the field) what cannot be dialled or looked up,
rather than pass on a value that would fail later where nobody sees it.
"""

from __future__ import annotations

import dataclasses

from regulars_events.catalogue import CustomerUpserted
from regulars_shop.contact import (
    DEFAULT_COUNTRY,
    UnusableContact,
    check_country,
    check_state,
    check_timezone,
    normalise_phone,
)

from .postings import FieldError, Posting, Rejected


def usable_contact(posting: Posting, shop_country: str = DEFAULT_COUNTRY) -> Posting:
    """The posting with its customer's phone in E.164 and its time zone, state and
    country spelled canonically; raises :class:`Rejected` naming each unusable field.
    A national number is read in the customer's ``country``, else the shop's."""
    event = posting.event
    if not isinstance(event, CustomerUpserted):
        return posting
    errors: list[FieldError] = []
    changes: dict[str, str] = {}
    country = shop_country
    if event.country is not None:
        try:
            country = changes["country"] = check_country(event.country)
        except UnusableContact as exc:
            errors.append(FieldError("data.country", str(exc)))
    if event.phone is not None:
        try:
            changes["phone"] = normalise_phone(event.phone, country)
        except UnusableContact as exc:
            errors.append(FieldError("data.phone", str(exc)))
    if event.timezone is not None:
        try:
            changes["timezone"] = check_timezone(event.timezone)
        except UnusableContact as exc:
            errors.append(FieldError("data.timezone", str(exc)))
    if event.state is not None:
        try:
            changes["state"] = check_state(event.state, country)
        except UnusableContact as exc:
            errors.append(FieldError("data.state", str(exc)))
    if errors:
        raise Rejected(422, "; ".join(f"{e.field}: {e.message}" for e in errors), errors)
    if all(getattr(event, k) == v for k, v in changes.items()):
        return posting
    return dataclasses.replace(posting, event=event.model_copy(update=changes))
