"""The BG/NBD fit against the paper, and what it says of single customers."""

from __future__ import annotations

import csv
import importlib.util
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from regulars_loyalty.domain.rhythm import (
    BgNbd,
    TooLittleHistory,
    VisitRhythm,
    fit,
    fit_arrays,
)

NOW = datetime(2026, 11, 20, tzinfo=UTC)


def cdnow() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The paper's CDNOW sample (2,357 customers, weeks), as the lifetimes package ships
    it; read from the installed file, without importing lifetimes."""
    spec = importlib.util.find_spec("lifetimes")
    assert spec is not None and spec.origin is not None, "lifetimes (a dev dependency)"
    path = Path(spec.origin).parent / "datasets" / "cdnow_customers_summary.csv"
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2357
    return tuple(  # type: ignore[return-value]
        np.array([float(r[k]) for r in rows]) for k in ("frequency", "recency", "T")
    )


@pytest.fixture(scope="module")
def paper_fit() -> BgNbd:
    return fit_arrays(*cdnow())


@pytest.mark.parametrize(
    ("name", "paper"),
    [("r", 0.243), ("alpha", 4.414), ("a", 0.793), ("b", 2.426), ("log_likelihood", -9582.4)],
)
def test_the_fit_gives_the_papers_estimates_on_cdnow(
    paper_fit: BgNbd, name: str, paper: float
) -> None:
    assert getattr(paper_fit, name) == pytest.approx(paper, rel=0.01)
    assert paper_fit.customers == 2357


def test_grouping_identical_histories_changes_nothing(paper_fit: BgNbd) -> None:
    x, t_x, T = cdnow()
    doubled = fit_arrays(x, t_x, T, counts=np.full(x.shape, 2.0))
    assert doubled.r == pytest.approx(paper_fit.r, rel=1e-4)
    assert doubled.log_likelihood == pytest.approx(2 * paper_fit.log_likelihood, rel=1e-6)


def test_p_alive_and_expected_visits_follow_the_formulas(paper_fit: BgNbd) -> None:
    m = paper_fit
    # the paper's customer with x=2, t_x=30.43, T=38.86 (weeks)
    h = VisitRhythm(2, 30.43, 38.86)
    odds = m.a / (m.b + 2 - 1) * ((m.alpha + 38.86) / (m.alpha + 30.43)) ** (m.r + 2)
    assert m.p_alive(h) == pytest.approx(1 / (1 + odds), rel=1e-9)
    # the paper's Figure 6: about 1.2 expected visits in the next 39 weeks for this customer
    assert m.expected_visits(h, 39) == pytest.approx(1.23, abs=0.05)
    assert m.expected_visits(h, 0) == pytest.approx(0.0, abs=1e-12)
    # the expectation grows with the horizon
    assert m.expected_visits(h, 52) > m.expected_visits(h, 39)


def test_a_one_visit_customer_is_alive_by_the_models_assumption(paper_fit: BgNbd) -> None:
    assert paper_fit.p_alive(VisitRhythm(0, 0.0, 200.0)) == 1.0


def test_a_regular_seen_last_week_is_likelier_alive_than_one_gone_for_years(
    paper_fit: BgNbd,
) -> None:
    regular = VisitRhythm.of([NOW - timedelta(weeks=w) for w in (1, 13, 26, 39)], NOW)
    gone = VisitRhythm.of([NOW - timedelta(weeks=w) for w in (150, 162, 175, 188)], NOW)
    assert regular.repeat_visits == gone.repeat_visits == 3
    assert paper_fit.p_alive(regular) > 0.8 > 0.1 > paper_fit.p_alive(gone)
    assert paper_fit.expected_visits(regular, 52) > paper_fit.expected_visits(gone, 52)


def test_too_little_history_says_what_there_was() -> None:
    few = [VisitRhythm(1, 5.0, 10.0)] * 30
    with pytest.raises(TooLittleHistory, match="30 customers with a visit, 30 of them back"):
        fit(few)
    once = [VisitRhythm(0, 0.0, 10.0)] * 200
    with pytest.raises(TooLittleHistory, match="0 of them back again"):
        fit(once)


def test_a_visit_rhythm_from_visit_times() -> None:
    visits = [NOW - timedelta(weeks=10), NOW - timedelta(weeks=4), NOW + timedelta(days=1)]
    h = VisitRhythm.of(list(reversed(visits)), NOW)
    assert (h.repeat_visits, h.last_visit_age, h.observed_for) == (1, 6.0, 10.0)
    with pytest.raises(ValueError, match="needs a visit"):
        VisitRhythm.of([NOW + timedelta(days=1)], NOW)


def test_a_shop_whose_customers_all_keep_one_rhythm_still_fits() -> None:
    # every customer every 13 weeks exactly: no spread for the gamma and beta to find
    rhythms = [
        VisitRhythm(n % 6 + 1, 13.0 * (n % 6 + 1), 13.0 * (n % 6 + 1) + 5) for n in range(120)
    ]
    model = fit(rhythms)
    assert all(np.isfinite([model.r, model.alpha, model.a, model.b]))
    assert 0.0 <= model.p_alive(rhythms[0]) <= 1.0
    assert np.isfinite(model.expected_visits(rhythms[0], 52))


def test_where_the_closed_form_overflows_the_rate_is_taken_as_known() -> None:
    # large r and alpha: a rate all but certain (0.1 a week); the closed form still holds
    # here, and the fallback used past its overflow agrees with it
    model = BgNbd(r=2_000.0, alpha=20_000.0, a=1.5, b=3.0, log_likelihood=0.0, customers=0)
    closed = model.expected_visits_many([2.0], [20.0], [30.0], 52.0)[0]
    known_rate = (
        model._visits_while_alive(2.0, 30.0, 52.0) * model.p_alive_many([2.0], [20.0], [30.0])[0]
    )
    assert np.isfinite(closed)
    assert known_rate == pytest.approx(closed, rel=0.02)
    huge = BgNbd(r=4e8, alpha=4e9, a=1.5, b=3.0, log_likelihood=0.0, customers=0)
    assert np.isfinite(huge.expected_visits(VisitRhythm(2, 20.0, 30.0), 52.0))
