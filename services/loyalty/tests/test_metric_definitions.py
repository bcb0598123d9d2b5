"""The metrics' definitions as the console and the API show them: read from the metrics
module's documentation, one entry per metric name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from regulars_loyalty.domain.metrics import ShopHistory, definitions, report, tally

START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2027, 1, 1, tzinfo=UTC)


def test_every_metric_has_a_definition_and_nothing_else_does() -> None:
    found = definitions()
    published = report(tally(ShopHistory(), START, END, timedelta(days=365), END))
    assert set(found) == set(published)


def test_a_definition_is_the_formula_and_its_continuation_lines_joined() -> None:
    found = definitions()
    assert found["csat"] == "% of CSAT answers that are 4 or 5 (value 0..100)."
    assert found["quality_pct"] == "1 - comebacks / visits = (visits - comebacks) / visits."
    assert found["referral_pct"] == (
        "new customers (first visit in the range) referred by another customer / new customers."
    )


def test_two_names_on_one_line_share_the_definition() -> None:
    found = definitions()
    assert found["time_to_ack_p50_s"] == found["time_to_resolve_p50_s"]
    assert found["time_to_ack_p50_s"].startswith(
        "the median (the mean of the middle two for an even count) of seconds from opening"
    )
    assert found["time_to_ack_p50_s"].endswith("; the denominator is that count.")


def test_the_paragraph_after_the_list_is_no_part_of_the_last_definition() -> None:
    found = definitions()
    assert found["plan_renewal_pct"] == (
        "plans renewed / (renewed + expired), over plan events in the range."
    )
