"""Is this customer still a customer, judged by their own visit rhythm: the BG/NBD model.

Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way: An Alternative to the
Pareto/NBD Model". While a customer is still a customer they visit as a Poisson process
with their own rate lambda (gamma-distributed across the shop's customers, shape r, rate
alpha); after each visit they stop being one with their own probability p (beta-distributed,
a and b). A shop's four numbers come from its customers' histories by maximum likelihood;
then one customer's history (x repeat visits, the last t_x weeks after their first, seen
for T weeks) says how likely they are to still be a customer and how often they will come.

Pure: numbers in, numbers out. Time is in weeks throughout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
from scipy.optimize import OptimizeResult, minimize
from scipy.special import (
    betainccinv,
    betaincinv,
    betaln,
    digamma,
    expit,
    gammaln,
    hyp2f1,
    log_expit,
)

Floats = npt.NDArray[np.float64]

MIN_CUSTOMERS = 50
MIN_RETURNING = 10

_WEEK = timedelta(weeks=1)

# The fit works on times divided by the longest history over this: the four numbers then start
# near the optimum's order of magnitude whatever the shop's age, and alpha is scaled back after.
_SCALED_LONGEST = 10.0
# Where the search starts, as (log r, log(a+b), log(a/b)), the mean visit rate always that
# of the shop's customers: r = 1, a = b = 1 (lifetimes' start), then the same with a and b
# far larger. With little history the likelihood can rise along more than one endless
# ridge (nobody drops out; everybody shares one drop-out chance); each start finds the
# one nearest it, and the fit keeps the higher.
_STARTS = ((0.0, math.log(2.0), 0.0), (0.0, 8.0, 0.0))
# Bounds on each search coordinate: past e^18 a ridge's likelihood has stopped changing in
# any digit that matters, and exp, betaln and digamma stay well inside floating point.
_LOG_BOUND = 18.0
# Expected visits come from the closed form while the rounding in its 2F1 (scipy's is good
# to ~1e-12 where this is used) is magnified less than this, from a quadrature good to ~1e-7
# otherwise.
_MAGNIFIED_AT_MOST = 1e4
# tanh-sinh nodes s over [-5, 5] in steps of 1/16: u = expit(pi sinh s) reaches 1e-100 of
# either end, and the rule integrates F^-1's endpoint behaviour to ~1e-7 for any a and b
_NODES = np.arange(-80, 81) / 16.0
_NODES_LOWER = expit(np.pi * np.sinh(_NODES))  # u
_NODES_UPPER = expit(-np.pi * np.sinh(_NODES))  # 1 - u, without rounding it near 1
_NODE_WEIGHTS = np.pi * np.cosh(_NODES) * _NODES_LOWER * _NODES_UPPER
_NODE_WEIGHTS /= _NODE_WEIGHTS.sum()  # the sum is 16 to ~1e-15; exactly 1 when p is certain
_SMALLEST = float(np.finfo(np.float64).tiny)


class TooLittleHistory(Exception):
    """A shop has too few customers, or too few who came back, to learn its own rhythm."""

    def __init__(self, customers: int, returning: int) -> None:
        super().__init__(
            f"{customers} customers with a history, {returning} of them returning; fitting the "
            f"shop's visit rhythm needs at least {MIN_CUSTOMERS} customers and {MIN_RETURNING} "
            "returning ones, so until then this shop's churn risk comes from its rules alone"
        )
        self.customers = customers
        self.returning = returning


@dataclass(frozen=True)
class VisitRhythm:
    """One customer's history as the model sees it, in weeks."""

    repeat_visits: int  # x: visits after the first
    last_visit_age: float  # t_x: weeks from the first visit to the last
    observed_for: float  # T: weeks from the first visit to the moment of the fit or score

    def __post_init__(self) -> None:
        _check_history(
            np.asarray([self.repeat_visits], dtype=np.float64),
            np.asarray([self.last_visit_age], dtype=np.float64),
            np.asarray([self.observed_for], dtype=np.float64),
        )

    @classmethod
    def of(cls, visits: Sequence[datetime], at: datetime) -> VisitRhythm:
        """A customer's rhythm at `at` from their visits (any order; later ones not yet seen).

        Two visits at the same instant are one visit recorded twice.
        """
        for moment in (at, *visits):
            if moment.tzinfo is None or moment.utcoffset() is None:
                raise ValueError(f"{moment.isoformat()} has no time zone; visits need one")
        seen = sorted({visit for visit in visits if visit <= at})
        if not seen:
            raise ValueError(
                f"no visit on or before {at.isoformat()} ({len(visits)} visits given, all later)"
                if visits
                else "no visits: a rhythm needs at least the first visit"
            )
        first = seen[0]
        return cls(
            repeat_visits=len(seen) - 1,
            last_visit_age=(seen[-1] - first) / _WEEK,
            observed_for=(at - first) / _WEEK,
        )


@dataclass(frozen=True)
class BgNbd:
    """A shop's fitted visit rhythm: lambda ~ Gamma(r, alpha), p ~ Beta(a, b)."""

    r: float
    alpha: float  # in weeks
    a: float
    b: float
    log_likelihood: float  # of the histories it was fitted to, times in weeks
    customers: int

    def p_alive(self, rhythm: VisitRhythm) -> float:
        """The probability the customer is still a customer now (at T)."""
        return float(
            self.p_alive_many(
                rhythm.repeat_visits, rhythm.last_visit_age, rhythm.observed_for
            ).item()
        )

    def expected_visits(self, rhythm: VisitRhythm, weeks: float) -> float:
        """How many visits the customer is expected to make in the next `weeks` weeks."""
        return float(
            self.expected_visits_many(
                rhythm.repeat_visits, rhythm.last_visit_age, rhythm.observed_for, weeks
            ).item()
        )

    def expected_weeks_to_next_visit(self, rhythm: VisitRhythm) -> float | None:
        """Weeks to the next visit if still a customer: E[1/lambda | history], (alpha+T)/(r+x-1).

        None when r + x <= 1: with so little seen, slow visitors are likely enough that
        the mean gap is infinite.
        """
        shape = self.r + rhythm.repeat_visits
        if shape <= 1.0:
            return None
        return (self.alpha + rhythm.observed_for) / (shape - 1.0)

    def p_alive_many(self, x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike) -> Floats:
        """p_alive for many customers at once (arrays of x, t_x and T, broadcast together)."""
        visits, last, observed = _histories(x, t_x, T)
        return _p_alive(self, visits, last, observed)

    def expected_visits_many(
        self,
        x: npt.ArrayLike,
        t_x: npt.ArrayLike,
        T: npt.ArrayLike,
        weeks: npt.ArrayLike,
    ) -> Floats:
        """expected_visits for many customers (or horizons) at once, broadcast together.

        Paper eq. 10: P(alive) times the visits expected of a customer still alive,
        (a+b+x-1)/(a-1) * [1 - ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; z)],
        z = t/(alpha+T+t).
        """
        visits, last, observed = _histories(x, t_x, T)
        horizon = np.asarray(weeks, dtype=np.float64)
        if not np.all(np.isfinite(horizon)) or np.any(horizon < 0):
            raise ValueError("weeks ahead must be finite and not negative")
        visits, last, observed, horizon = np.broadcast_arrays(visits, last, observed, horizon)
        alive = _p_alive(self, visits, last, observed)
        return alive * _visits_while_alive(self, visits, observed, horizon)


def fit(rhythms: Sequence[VisitRhythm]) -> BgNbd:
    """The shop's visit rhythm from its customers' histories (raises TooLittleHistory)."""
    return fit_arrays(
        [rhythm.repeat_visits for rhythm in rhythms],
        [rhythm.last_visit_age for rhythm in rhythms],
        [rhythm.observed_for for rhythm in rhythms],
    )


def fit_arrays(
    x: npt.ArrayLike,
    t_x: npt.ArrayLike,
    T: npt.ArrayLike,
    counts: npt.ArrayLike | None = None,
) -> BgNbd:
    """The maximum-likelihood fit over histories given as arrays; counts weighs each row.

    Raises TooLittleHistory below MIN_CUSTOMERS customers or MIN_RETURNING returning ones.

    Identical histories are grouped first, so the likelihood is evaluated once per distinct
    history however many customers share it.
    """
    visits, last, observed = _histories(x, t_x, T)
    visits, last, observed = (np.ravel(v) for v in np.broadcast_arrays(visits, last, observed))
    if counts is None:
        weight = np.ones_like(visits)
    else:
        weight = np.ravel(np.asarray(counts, dtype=np.float64))
        if weight.shape != visits.shape:
            raise ValueError(f"{weight.size} counts for {visits.size} histories")
        if not np.all(np.isfinite(weight)) or np.any(weight < 0) or np.any(weight % 1 != 0):
            raise ValueError("counts must be whole numbers of customers, not negative")

    customers = int(weight.sum())
    returning = int(weight[visits > 0].sum())
    if customers < MIN_CUSTOMERS or returning < MIN_RETURNING:
        raise TooLittleHistory(customers, returning)

    keep = weight > 0
    rows, where = np.unique(
        np.column_stack([visits[keep], last[keep], observed[keep]]), axis=0, return_inverse=True
    )
    weight = np.bincount(where.reshape(-1), weights=weight[keep]).astype(np.float64)
    visits, last, observed = rows[:, 0], rows[:, 1], rows[:, 2]

    # positive: a returning customer's last visit, and so their T, is after their first
    scale = float(observed.max()) / _SCALED_LONGEST
    scaled = (visits, last / scale, observed / scale, weight / weight.sum())

    def objective(shape: Floats) -> tuple[float, Floats]:
        total, log_gradient = _log_likelihood(_log_params(shape), *scaled)
        return -total, -_shape_gradient(log_gradient, shape)

    log_rate = math.log(float(np.dot(scaled[0], scaled[3]) / np.dot(scaled[2], scaled[3])))
    best: OptimizeResult | None = None
    for log_r, log_concentration, log_odds in _STARTS:
        shape = np.array([log_r, log_rate, log_concentration, log_odds])
        # L-BFGS-B's line search can stop short on a flat stretch of a ridge; a restart from
        # where it stopped, with its curvature memory cleared, goes on to the optimum.
        for _ in range(2):
            result = minimize(
                objective,
                shape,
                jac=True,
                method="L-BFGS-B",
                bounds=[(-_LOG_BOUND, _LOG_BOUND)] * 4,
                options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-10},
            )
            shape = result.x
        if best is None or result.fun < best.fun:
            best = result
    if best is None or not np.all(np.isfinite(best.x)) or not math.isfinite(float(best.fun)):
        raise ArithmeticError("the visit-rhythm fit found no finite optimum")

    r, alpha, a, b = (float(v) for v in np.exp(_log_params(best.x)))
    alpha *= scale
    log_params = np.log(np.array([r, alpha, a, b]))
    total, _ = _log_likelihood(log_params, visits, last, observed, weight)
    return BgNbd(r=r, alpha=alpha, a=a, b=b, log_likelihood=total, customers=customers)


def _histories(x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike) -> tuple[Floats, ...]:
    visits = np.asarray(x, dtype=np.float64)
    last = np.asarray(t_x, dtype=np.float64)
    observed = np.asarray(T, dtype=np.float64)
    _check_history(*np.broadcast_arrays(visits, last, observed))
    return visits, last, observed


def _check_history(visits: Floats, last: Floats, observed: Floats) -> None:
    if not (np.all(np.isfinite(visits)) and np.all(np.isfinite(last))):
        raise ValueError("repeat visits and last-visit ages must be finite")
    if not np.all(np.isfinite(observed)):
        raise ValueError("observed-for weeks must be finite")
    if np.any(visits < 0) or np.any(visits % 1 != 0):
        raise ValueError("repeat visits must be whole numbers, not negative")
    if np.any(last < 0) or np.any(last > observed):
        raise ValueError("the last visit must fall between the first visit and now")
    if np.any((visits == 0) != (last == 0)):
        raise ValueError(
            "a customer with no repeat visit has their last visit at their first (age 0), "
            "and one with repeat visits has it later"
        )


def _log_likelihood(
    log_params: Floats, x: Floats, t_x: Floats, T: Floats, weight: Floats
) -> tuple[float, Floats]:
    """The weighted log-likelihood (paper eq. 6) and its gradient in the log parameters."""
    r, alpha, a, b = np.exp(log_params)
    returning = x > 0
    # x and b + x - 1 for returning customers only; the others' terms are set apart below
    repeats = np.maximum(x, 1.0)
    later = b + (repeats - 1.0)
    log_now = np.log(alpha + T)
    log_last = np.log(alpha + t_x)

    # gammaln(r+x) - gammaln(r) and the like, as log-beta functions: the differences of
    # gammaln lose every digit once r (or a + b, or b) is large next to x
    a1 = np.where(returning, gammaln(repeats) - betaln(r, repeats), 0.0) + r * np.log(alpha)
    a2 = np.where(returning, betaln(a + b, repeats) - betaln(b, repeats), 0.0)
    a3 = -(r + x) * log_now
    # -inf for those never back: they cannot have left after a repeat visit they never made
    a4 = np.where(returning, np.log(a) - np.log(later) - (r + x) * log_last, -np.inf)
    tail = np.logaddexp(a3, a4)
    total = float(np.dot(weight, a1 + a2 + tail))

    # how much of the tail each way of explaining the quiet time since t_x carries:
    # still a customer but not visiting (A3), or gone after the last visit (A4)
    share_alive = np.exp(a3 - tail)
    share_gone = np.exp(a4 - tail)
    d_r = (
        digamma(r + x) - digamma(r) + np.log(alpha) - share_alive * log_now - share_gone * log_last
    )
    d_alpha = r / alpha - (r + x) * (share_alive / (alpha + T) + share_gone / (alpha + t_x))
    d_a = digamma(a + b) - digamma(a + b + x) + share_gone / a
    d_b = digamma(a + b) + digamma(b + x) - digamma(b) - digamma(a + b + x) - share_gone / later
    gradient = np.array(
        [
            r * np.dot(weight, d_r),
            alpha * np.dot(weight, d_alpha),
            a * np.dot(weight, d_a),
            b * np.dot(weight, d_b),
        ]
    )
    return total, gradient


def _log_params(shape: Floats) -> Floats:
    """log (r, alpha, a, b) from the coordinates the fit searches in.

    Those are log r, log(r/alpha) (the mean visit rate), log(a+b) and log(a/b) (the log
    odds of the mean drop-out chance). When a shop's customers all visit at about one rate,
    or all have about one drop-out chance, the likelihood keeps rising as r and alpha (or
    a and b) grow together without end; in these coordinates that ridge runs along one axis
    to its bound instead of curving through all four, which a quasi-Newton search follows.
    """
    log_r, log_rate, log_concentration, log_odds = shape
    return np.array(
        [
            log_r,
            log_r - log_rate,
            log_concentration + log_expit(log_odds),
            log_concentration + log_expit(-log_odds),
        ]
    )


def _shape_gradient(log_gradient: Floats, shape: Floats) -> Floats:
    """The chain rule from the gradient in log (r, alpha, a, b) to the fit's coordinates."""
    d_r, d_alpha, d_a, d_b = log_gradient
    log_odds = shape[3]
    return np.array(
        [d_r + d_alpha, -d_alpha, d_a + d_b, d_a * expit(-log_odds) - d_b * expit(log_odds)]
    )


def _p_alive(model: BgNbd, x: Floats, t_x: Floats, T: Floats) -> Floats:
    """1 / (1 + [x>0] a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x)), in logs so nothing overflows."""
    later = model.b + (np.maximum(x, 1.0) - 1.0)
    log_odds_gone = (
        math.log(model.a)
        - np.log(later)
        + (model.r + x) * (np.log(model.alpha + T) - np.log(model.alpha + t_x))
    )
    alive: Floats = np.where(x > 0, expit(-log_odds_gone), 1.0)
    return alive


def _visits_while_alive(model: BgNbd, x: Floats, T: Floats, weeks: Floats) -> Floats:
    """E[visits in the next `weeks` | still a customer at T, x repeat visits so far].

    The closed form is (a+b+x-1)/(a-1) * (1 - Q), Q = ((alpha+T)/(alpha+T+t))^(r+x) 2F1(...).
    Where Q is close to 1 (a near 1, or a first-time customer in a shop whose a + b is near
    1, or a short horizon against a large b) the subtraction keeps few digits, and where the
    2F1 leaves floating point (many visits, long horizons, c <= 0) it keeps none: those rows
    are integrated over p instead.
    """
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    expected = np.zeros(np.shape(x))
    ahead = weeks > 0
    if not np.any(ahead):
        return expected
    x, T, weeks = x[ahead], T[ahead], weeks[ahead]

    c = a + b + (x - 1.0)
    z = weeks / (alpha + T + weeks)
    # what goes wrong here (2F1's poles at c = 0, -1, ..., its overflow, a 0/0 at a = 1)
    # is caught by `kept` and handed to the quadrature, so numpy need not warn about it
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_q = (r + x) * np.log1p(-z) + np.log(hyp2f1(r + x, b + x, c, z))
        one_minus_q = -np.expm1(log_q)
        closed = (c / (a - 1.0)) * one_minus_q
        # how many times the rounding in Q is magnified by taking it from 1
        magnified = np.exp(log_q) / np.abs(one_minus_q)
    kept = np.isfinite(closed) & (closed > 0) & (c > 0) & (magnified < _MAGNIFIED_AT_MOST)
    if not np.all(kept):
        redo = ~kept
        closed[redo] = _visits_while_alive_by_quadrature(model, x[redo], T[redo], weeks[redo])
    expected[ahead] = closed
    return expected


def _visits_while_alive_by_quadrature(model: BgNbd, x: Floats, T: Floats, weeks: Floats) -> Floats:
    """The same expectation as E_p[(1 - (1 + p t/(alpha+T))^-(r+x)) / p], p ~ Beta(a, b+x).

    The integral is taken over the beta distribution's quantiles u in (0, 1), p = F^-1(u),
    so that the nodes follow the density however peaked it is, with tanh-sinh nodes in u
    for the endpoint behaviour of F^-1 (upper-half nodes come from the complementary
    quantile, as 1 - u there is smaller than a float near 1 can hold). What is integrated is
    smooth in p and tends to (r+x) t/(alpha+T) as p -> 0.
    """
    expected = np.empty(np.shape(x))
    for visits in np.unique(x):
        rows = x == visits
        p = np.where(
            _NODES < 0,
            betaincinv(model.a, model.b + visits, _NODES_LOWER),
            betainccinv(model.a, model.b + visits, _NODES_UPPER),
        )
        p = np.maximum(p, _SMALLEST)
        rate = (weeks[rows] / (model.alpha + T[rows]))[:, np.newaxis]
        per_p = -np.expm1(-(model.r + visits) * np.log1p(p * rate)) / p
        expected[rows] = per_p @ _NODE_WEIGHTS
    return expected
