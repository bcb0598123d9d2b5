"""A customer's visit rhythm: the BG/NBD model (Fader, Hardie & Lee 2005, "Counting Your
Customers the Easy Way: An Alternative to the Pareto/NBD Model", Marketing Science 24(2)).

While still a customer, a customer visits as a Poisson process of their own rate (rates
across a shop's customers are gamma(r, alpha)); after each visit they may stop being one
with a probability of their own (beta(a, b) across customers). Fitted per shop, by
maximum likelihood on each customer's (x, t_x, T): repeat visits, weeks from the first
visit to the last, and weeks from the first visit to now. It then says, for one customer,
the chance they are still a customer (``p_alive``) and how many visits to expect.

Pure: numbers in, numbers out (scipy for the special functions and the optimiser).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
from scipy.integrate import quad
from scipy.optimize import minimize
from scipy.special import gammaln, hyp2f1
from scipy.stats import beta as beta_dist

Floats = npt.NDArray[np.float64]

#: below this a shop's customers say too little for a fit; the rules alone judge them
MIN_CUSTOMERS = 50
MIN_RETURNING = 10
WEEK = timedelta(weeks=1)
#: the search is kept inside e^-20..e^20 for every parameter: a shop whose customers all
#: visit at one rate pushes r and alpha up together without end (a ridge, no optimum)
_LOG_BOUND = 20.0


class TooLittleHistory(Exception):
    def __init__(self, customers: int, returning: int) -> None:
        super().__init__(
            f"{customers} customers with a visit, {returning} of them back again;"
            f" a fit needs {MIN_CUSTOMERS} and {MIN_RETURNING}"
        )
        self.customers, self.returning = customers, returning


@dataclass(frozen=True)
class VisitRhythm:
    """One customer's history as the model sees it, in weeks."""

    repeat_visits: int
    last_visit_age: float
    observed_for: float

    @classmethod
    def of(cls, visits: Sequence[datetime], at: datetime) -> VisitRhythm:
        """From the customer's visit times (any order; those after ``at`` not yet made)."""
        seen = sorted({v for v in visits if v <= at})
        if not seen:
            raise ValueError("a visit rhythm needs a visit at or before the moment")
        first = seen[0]
        return cls(len(seen) - 1, (seen[-1] - first) / WEEK, (at - first) / WEEK)


@dataclass(frozen=True)
class BgNbd:
    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    customers: int

    def p_alive(self, rhythm: VisitRhythm) -> float:
        return float(self.p_alive_many(*_arrays([rhythm]))[0])

    def expected_visits(self, rhythm: VisitRhythm, weeks: float) -> float:
        """Visits to expect in the next ``weeks`` (paper eq. 10)."""
        return float(self.expected_visits_many(*_arrays([rhythm]), weeks)[0])

    def expected_weeks_to_next_visit(self, rhythm: VisitRhythm) -> float | None:
        """Weeks to the next visit if still a customer: the mean of 1/rate given the
        history, whose rate is gamma(r + x, alpha + T); none while r + x <= 1."""
        shape = self.r + rhythm.repeat_visits
        return (self.alpha + rhythm.observed_for) / (shape - 1) if shape > 1 else None

    def p_alive_many(self, x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike) -> Floats:
        x, t_x, T = _as_floats(x, t_x, T)
        returning = x > 0
        later = np.where(returning, self.b + x - 1, 1.0)
        log_odds = (
            math.log(self.a)
            - np.log(later)
            + (self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + t_x))
        )
        return np.where(returning, 1.0 / (1.0 + np.exp(log_odds)), 1.0)

    def expected_visits_many(
        self,
        x: npt.ArrayLike,
        t_x: npt.ArrayLike,
        T: npt.ArrayLike,
        weeks: float,
    ) -> Floats:
        x, t_x, T = _as_floats(x, t_x, T)
        r, alpha, b = self.r, self.alpha, self.b
        # the closed form divides by a - 1; at a = 1 exactly its limit is what a nudge gives
        a = self.a if abs(self.a - 1.0) > 1e-9 else 1.0 + 1e-9
        z = weeks / (alpha + T + weeks)
        head = (a + b + x - 1) / (a - 1)
        ratio = np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + weeks)))
        bracket = 1.0 - ratio * hyp2f1(r + x, b + x, a + b + x - 1, z)
        while_alive = np.asarray(head * bracket, dtype=np.float64)
        for i in np.flatnonzero(~np.isfinite(while_alive)):
            while_alive[i] = self._visits_while_alive(float(x[i]), float(T[i]), weeks)
        return np.asarray(while_alive * self.p_alive_many(x, t_x, T), dtype=np.float64)

    def _visits_while_alive(self, x: float, T: float, weeks: float) -> float:
        """Where the closed form overflows (a shop whose customers all keep one rhythm fits
        r and alpha huge): the rate is then all but certain, (r + x) / (alpha + T), and
        only the drop-out chance p, beta(a, b + x) given the history, is averaged over:
        a Poisson rate λ stopped after each visit with chance p gives (1 - e^(-λpt)) / p."""
        rate = (self.r + x) / (self.alpha + T)

        def visits(p: float) -> float:
            stay = -math.expm1(-rate * p * weeks) / p if p > 0 else rate * weeks
            return float(stay * beta_dist.pdf(p, self.a, self.b + x))

        total, _error = quad(visits, 0.0, 1.0, limit=200)
        return float(total)


def _arrays(rhythms: Sequence[VisitRhythm]) -> tuple[Floats, Floats, Floats]:
    return (
        np.array([h.repeat_visits for h in rhythms], dtype=np.float64),
        np.array([h.last_visit_age for h in rhythms], dtype=np.float64),
        np.array([h.observed_for for h in rhythms], dtype=np.float64),
    )


def _as_floats(*values: npt.ArrayLike) -> tuple[Floats, ...]:
    return tuple(np.asarray(v, dtype=np.float64) for v in values)


def _log_likelihood(
    log_params: Floats,
    x: Floats,
    t_x: Floats,
    T: Floats,
    weight: Floats,
) -> float:
    """The weighted log-likelihood of the histories (paper eq. 6)."""
    r, alpha, a, b = np.exp(log_params)
    returning = x > 0
    a1 = gammaln(r + x) - gammaln(r) + r * math.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T)
    later = np.where(returning, b + x - 1, 1.0)
    a4 = np.where(returning, math.log(a) - np.log(later) - (r + x) * np.log(alpha + t_x), -np.inf)
    return float(np.dot(weight, a1 + a2 + np.logaddexp(a3, a4)))


def fit(rhythms: Sequence[VisitRhythm]) -> BgNbd:
    """The shop's fit on its customers' rhythms; :class:`TooLittleHistory` when too few."""
    return fit_arrays(*_arrays(rhythms))


def fit_arrays(
    x: npt.ArrayLike,
    t_x: npt.ArrayLike,
    T: npt.ArrayLike,
    counts: npt.ArrayLike | None = None,
) -> BgNbd:
    """The maximum-likelihood fit; ``counts`` weighs each row (a summary's repeats).

    Identical histories are grouped first, so a shop's 100,000 customers cost what their
    distinct histories cost.
    """
    x, t_x, T = _as_floats(x, t_x, T)
    weight = np.ones_like(x) if counts is None else np.asarray(counts, dtype=np.float64)
    if x.shape != t_x.shape or x.shape != T.shape or x.shape != weight.shape:
        raise ValueError("x, t_x, T (and counts) must be of one length")
    if np.any(x < 0) or np.any(t_x < 0) or np.any(t_x > T) or np.any(weight < 0):
        raise ValueError("a history needs 0 <= t_x <= T, x >= 0 and counts >= 0")
    customers = int(weight.sum())
    returning = int(weight[x > 0].sum())
    if customers < MIN_CUSTOMERS or returning < MIN_RETURNING:
        raise TooLittleHistory(customers, returning)
    rows, where = np.unique(np.column_stack([x, t_x, T]), axis=0, return_inverse=True)
    grouped = np.bincount(where.reshape(-1), weights=weight).astype(np.float64)
    hx, htx, hT = rows[:, 0], rows[:, 1], rows[:, 2]

    def objective(log_params: Floats) -> float:
        return -_log_likelihood(log_params, hx, htx, hT, grouped) / customers

    result = minimize(
        objective,
        np.zeros(4),
        method="L-BFGS-B",
        bounds=[(-_LOG_BOUND, _LOG_BOUND)] * 4,
        options={"maxiter": 2000, "ftol": 1e-14, "gtol": 1e-9},
    )
    if not np.all(np.isfinite(result.x)):
        raise ArithmeticError(f"the visit-rhythm fit did not converge: {result.message}")
    r, alpha, a, b = (float(v) for v in np.exp(result.x))
    total = _log_likelihood(result.x, hx, htx, hT, grouped)
    return BgNbd(r=r, alpha=alpha, a=a, b=b, log_likelihood=total, customers=customers)
