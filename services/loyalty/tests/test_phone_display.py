from __future__ import annotations

from dataclasses import dataclass

from regulars_loyalty.entrypoints.console.rendering import ENV
from regulars_shop.policy import Policy


@dataclass
class _Signed:
    policy: Policy


def _render(phone: str | None, country: str | None) -> str:
    template = ENV.from_string('<a href="tel:{{ p | tel }}">{{ p | phone }}</a>')
    values = {"p": phone}
    if country is not None:
        values["signed"] = _Signed(Policy.model_validate({"country": country}))
    return template.render(**values)


def test_phones_read_nationally_at_home_and_the_link_stays_e164() -> None:
    assert _render("+15125550142", "US") == '<a href="tel:+15125550142">(512) 555-0142</a>'
    assert _render("+442079460958", "US") == '<a href="tel:+442079460958">+44 20 7946 0958</a>'
    assert _render("+442079460958", "GB") == '<a href="tel:+442079460958">020 7946 0958</a>'
    assert _render("+15125550142", None) == '<a href="tel:+15125550142">(512) 555-0142</a>'
    assert _render(None, "US") == '<a href="tel:"></a>'
