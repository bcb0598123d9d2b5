"""Classification: what a survey answer, a follow-up call or a customer's reply says. Pure.

* Negative: NPS 0-6, CSAT 1-2, a complaint in the text, an unhappy follow-up call, or a
  reply that complains (opt-out, opt-in and HELP replies are consent, not feedback).
* Positive: a promoter (NPS 9-10) whose feedback is not negative.
* Safety: the text names a hazard (fire, smoke, a gas smell, carbon monoxide, a leak,
  "unsafe", "don't feel safe"...), or a safety part together with a problem in the same
  clause ("brakes grinding", "steering wheel shakes"). "Brake fluid top-up was great"
  names a part and no problem: no safety matter.
* Praise: not negative, words of praise, and a staff member named by id or name.

A hazard in the text is itself a complaint, except beside a high score (NPS 9-10, CSAT
4-5): "you fixed my unsafe brakes, thanks!" praises the repair of a hazard that is gone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from .text import NEGATORS, Hit, clauses, find, first_unnegated, terms

Severity = Literal["critical", "high", "normal"]

# -- lexicons ----------------------------------------------------------------------------

#: a hazard on its own, wherever it appears (unless negated: "no leaks", "no smoke")
SAFETY_HAZARDS = terms(
    [
        "unsafe",
        "dangerous",
        "danger",
        "hazard*",
        "fire",
        "on fire",
        "caught fire",
        "flame",
        "flames",
        "smoke",
        "smoking",
        "sparks",
        "sparking",
        "sparked",
        "carbon monoxide",
        "monoxide",
        "co detector*",
        "co alarm*",
        "co poison*",
        "co leak*",
        "co level*",
        "co reading*",
        "leak*",
        "gas smell",
        "gas odor",
        "gas odour",
        "gas fumes",
        "fuel smell",
        "gasoline smell",
        "propane smell",
        "burning smell",
        "burnt smell",
        "rotten egg*",
        "blowout",
        "blew out",
        "came off",
        "fell off",
        "almost crash*",
        "nearly crash*",
        "could have crashed",
        "could've crashed",
        "almost had an accident",
        "nearly had an accident",
        "almost killed",
        "nearly killed",
        "electrocut*",
        "exposed wire*",
        "overheat*",
    ]
)
#: a smell word and a fuel in one clause: "I smell gas", "smells like gasoline"
SMELLS = terms(["smell*", "odor*", "odour*", "fumes", "stink*", "stank"])
FUELS = terms(["gas", "gasoline", "fuel", "propane", "petrol", "exhaust", "burning", "burnt"])
#: parts whose trouble is a safety matter: a hazard only with a problem in the clause
SAFETY_PARTS = terms(
    [
        "brake*",
        "braking",
        "steering",
        "tire",
        "tires",
        "tyre",
        "tyres",
        "wheel",
        "wheels",
        "lug nut*",
        "lugnut*",
        "lugs",
        "airbag*",
        "air bag*",
        "suspension",
        "ball joint*",
        "tie rod*",
        "axle*",
        "seatbelt*",
        "seat belt*",
        "furnace",
        "boiler",
        "water heater*",
        "gas line*",
        "gas valve*",
        "heat exchanger*",
        "flue",
        "pilot light*",
        "breaker*",
        "wiring",
        "outlet*",
    ]
)
PROBLEMS = terms(
    [
        "fail*",
        "grind*",
        "squeal*",
        "squeak*",
        "pull*",
        "shak*",
        "shook",
        "wobbl*",
        "vibrat*",
        "soft",
        "spongy",
        "mushy",
        "loose",
        "noise*",
        "noisy",
        "lock up",
        "locks up",
        "locked up",
        "locking up",
        "went out",
        "gave out",
        "give out",
        "gives out",
        "stopped working",
        "not working",
        "work",
        "working",
        "broke*",
        "problem*",
        "issue*",
        "wrong",
        "scary",
        "scare*",
        "went off",
        "going off",
        "goes off",
        "beep*",
        "alarm*",
        "chirp*",
        "worse",
        "bad",
        "feel off",
        "feels off",
        "felt off",
        "barely",
        "floor",
        "warning",
        "light on",
        "light is on",
        "light came on",
        "stuck",
        "stiff",
        "hard to",
        "clunk*",
        "knock*",
        "crack*",
        "smell*",
        "smok*",
        "hot",
        "tripp*",
        "sparks",
        "flicker*",
        "popping",
        "bang*",
        "rattl*",
    ]
)
#: "work"/"working" count as a problem only when negated ("brakes don't work")
_NEEDS_NEGATION = frozenset({("work",), ("working",)})
#: "not safe", "don't feel safe", "no longer safe": negated safety is a hazard
SAFE = terms(["safe", "safely"])

COMPLAINTS = terms(
    [
        "rude",
        "disrespect*",
        "overcharg*",
        "over charged",
        "ripped off",
        "rip off",
        "ripoff",
        "scam*",
        "terrible",
        "horrible",
        "horrendous",
        "awful",
        "worst",
        "disappoint*",
        "unhappy",
        "not happy",
        "dissatisfied",
        "unsatisfied",
        "not satisfied",
        "unacceptable",
        "complain*",
        "never again",
        "won't be back",
        "wont be back",
        "will not be back",
        "not coming back",
        "never coming back",
        "never going back",
        "won't return",
        "will not return",
        "waste of",
        "wasted",
        "still broken",
        "still not",
        "still doing",
        "still making",
        "still happening",
        "still there",
        "still the same",
        "still have the",
        "still has the",
        "not fixed",
        "never fixed",
        "didn't fix",
        "didnt fix",
        "did not fix",
        "wasn't fixed",
        "was not fixed",
        "isn't fixed",
        "same problem",
        "same issue",
        "same noise",
        "worse than before",
        "damaged my",
        "damaged the",
        "damage to my",
        "scratched my",
        "scratched the",
        "dented my",
        "dented the",
        "broke my",
        "lied",
        "lying",
        "liar*",
        "dishonest",
        "hidden fee*",
        "too expensive",
        "overpriced",
        "took forever",
        "too long",
        "nobody called",
        "no one called",
        "never called",
        "never heard back",
        "ignored",
        "unprofessional",
        "incompetent",
        "sloppy",
        "careless",
        "filthy",
        "dirty",
        "grease on",
        "poor service",
        "poor job",
        "poor work",
        "bad service",
        "bad job",
        "bad experience",
        "refund",
        "angry",
        "furious",
        "upset",
        "frustrat*",
        "ridiculous",
        "pathetic",
        "useless",
        "garbage",
    ]
)
PRAISE = terms(
    [
        "thank*",
        "thx",
        "great",
        "excellent",
        "awesome",
        "amazing",
        "fantastic",
        "wonderful",
        "helpful",
        "friendly",
        "kind",
        "professional",
        "best",
        "love*",
        "appreciat*",
        "shout out",
        "shoutout",
        "kudos",
        "above and beyond",
        "impressed",
        "outstanding",
        "courteous",
        "knowledgeable",
        "honest",
        "patient",
        "recommend*",
        "good job",
        "nice job",
        "well done",
        "pleasure",
    ]
)

#: a term right after these is about finding or preventing a hazard, not one
_CHECKS = frozenset(
    {"for", "check", "checked", "test", "tested", "inspect", "inspected", "new", "installed"}
)
#: a term right before these is a routine check ("leak test", "smoke detector installed")
_ROUTINE = frozenset(
    {
        "check",
        "checks",
        "test",
        "tests",
        "testing",
        "detector",
        "detectors",
        "inspection",
        "installed",
        "replaced",
        "checked",
        "tested",
    }
)


# -- text ---------------------------------------------------------------------------------


def _unnegated(hits: Sequence[Hit]) -> list[Hit]:
    return [h for h in hits if not h.negated]


def safety_matter(text: str | None) -> str | None:
    """The safety matter ``text`` raises (the words that show it), or None."""
    if not text:
        return None
    cs = clauses(text)
    for hit in find(cs, SAFETY_HAZARDS):
        words = cs[hit.clause]
        before = words[hit.index - 1] if hit.index > 0 else ""
        end = hit.index + len(hit.term.words)
        after = words[end] if end < len(words) else ""
        if hit.negated or before in _CHECKS or after in _ROUTINE:
            continue
        return " ".join(words[hit.index : end])
    for hit in find(cs, SAFE):
        if hit.negated:  # "not safe", "don't feel safe", "no longer safe to drive"
            return "not safe"
    for words in cs:
        one = [words]
        smell = _unnegated(list(find(one, SMELLS)))
        if smell and _unnegated(list(find(one, FUELS))):
            return f"{smell[0].term.words[0]} ({' '.join(words)})"
        parts = _unnegated(list(find(one, SAFETY_PARTS)))
        if not parts:
            continue
        for problem in find(one, PROBLEMS):
            needs_negation = problem.term.words in _NEEDS_NEGATION
            if problem.negated == needs_negation:
                return f"{parts[0].term.words[0]} ({' '.join(words)})"
    return None


def complaint(text: str | None) -> str | None:
    """The complaint words in ``text`` ("rude", "overcharged", "never again"...), or None."""
    if not text:
        return None
    cs = clauses(text)
    hit = first_unnegated(cs, COMPLAINTS)
    if hit is None:
        return None
    return " ".join(cs[hit.clause][hit.index : hit.index + len(hit.term.words)])


def praises(text: str | None) -> bool:
    return bool(text) and first_unnegated(clauses(text or ""), PRAISE) is not None


@dataclass(frozen=True)
class StaffRef:
    """A staff member as the policy lists them (id, name, role, contact)."""

    id: str
    name: str
    role: str
    email: str | None = None
    phone: str | None = None


def named_staff(text: str | None, staff: Sequence[StaffRef]) -> list[StaffRef]:
    """Staff named in ``text``: by id, full name, or a first name no one else shares."""
    if not text:
        return []
    words = [w for c in clauses(text) for w in c]
    joined = f" {' '.join(words)} "
    first_names: dict[str, int] = {}
    for member in staff:
        first = member.name.split()[0].lower() if member.name.split() else ""
        first_names[first] = first_names.get(first, 0) + 1
    found: list[StaffRef] = []
    for member in staff:
        candidates = {member.id.lower(), " ".join(member.name.lower().split())}
        first = member.name.split()[0].lower() if member.name.split() else ""
        if first and first_names.get(first) == 1:
            candidates.add(first)
        if any(c and f" {c} " in joined for c in candidates if c not in NEGATORS):
            found.append(member)
    return found


def manager_of(member: StaffRef, staff: Sequence[StaffRef]) -> StaffRef | None:
    """An advisor's manager is a service manager (else the owner); a service manager's is
    the owner; the owner has none."""
    above = {"advisor": ("service_manager", "owner"), "service_manager": ("owner",)}
    for role in above.get(member.role, ()):
        for other in staff:
            if other.role == role and other.id != member.id:
                return other
    return None


# -- scores and signals -----------------------------------------------------------------


def negative_score(nps: int | None, csat: int | None) -> bool:
    return (nps is not None and nps <= 6) or (csat is not None and csat <= 2)


def high_score(nps: int | None, csat: int | None) -> bool:
    return (nps is not None and nps >= 9) or (csat is not None and csat >= 4)


def promoter(nps: int | None) -> bool:
    return nps is not None and nps >= 9


@dataclass(frozen=True)
class Verdict:
    """What one piece of feedback means."""

    negative: bool
    positive: bool
    #: why it is negative (or positive): "nps 2", "complaint: rude", "unhappy call"...
    reasons: tuple[str, ...] = ()
    safety: str | None = None
    praise: bool = False
    staff: tuple[StaffRef, ...] = field(default_factory=tuple)


def _text_verdict(
    text: str | None, *, scored_high: bool
) -> tuple[list[str], str | None, bool, bool]:
    reasons: list[str] = []
    complained = complaint(text)
    if complained:
        reasons.append(f"complaint: {complained}")
    hazard = safety_matter(text)
    if hazard and not scored_high:
        reasons.append(f"safety: {hazard}")
    return reasons, hazard, bool(complained), praises(text)


def classify_survey(
    nps: int | None, csat: int | None, comment: str | None, staff: Sequence[StaffRef] = ()
) -> Verdict:
    """A survey answer: NPS 0-6, CSAT 1-2 or a complaint is negative; NPS 9-10 positive."""
    reasons: list[str] = []
    if nps is not None and nps <= 6:
        reasons.append(f"nps {nps}")
    if csat is not None and csat <= 2:
        reasons.append(f"csat {csat}")
    text_reasons, hazard, _complained, kind_words = _text_verdict(
        comment, scored_high=high_score(nps, csat)
    )
    reasons.extend(text_reasons)
    negative = bool(reasons)
    positive = not negative and promoter(nps)
    named = () if negative or not kind_words else tuple(named_staff(comment, staff))
    return Verdict(
        negative,
        positive,
        tuple(reasons) or ((f"nps {nps}",) if positive else ()),
        hazard,
        bool(named),
        named,
    )


def classify_call(
    satisfied: bool, score: int | None, notes: str | None, staff: Sequence[StaffRef] = ()
) -> Verdict:
    """A reached follow-up call: unhappy (not satisfied, or a score of 6 or less), or
    notes that complain or raise a safety matter, is negative."""
    reasons: list[str] = []
    if not satisfied:
        reasons.append("unhappy call")
    if score is not None and score <= 6:
        reasons.append(f"call score {score}")
    text_reasons, hazard, _complained, kind_words = _text_verdict(
        notes, scored_high=satisfied and score is not None and score >= 9
    )
    reasons.extend(text_reasons)
    negative = bool(reasons)
    positive = not negative and promoter(score)
    named = () if negative or not kind_words else tuple(named_staff(notes, staff))
    return Verdict(negative, positive, tuple(reasons), hazard, bool(named), named)


ReplyKind = Literal["opt_out", "opt_in", "help", "other"]


def classify_customer_reply(
    text: str, reply_class: ReplyKind, staff: Sequence[StaffRef] = ()
) -> Verdict | None:
    """A free-text reply: None for consent keywords (followup acts on those); else a
    complaint or a safety matter is negative, and anything else is a note."""
    if reply_class != "other":
        return None
    reasons, hazard, _complained, kind_words = _text_verdict(text, scored_high=False)
    negative = bool(reasons)
    named = () if negative or not kind_words else tuple(named_staff(text, staff))
    return Verdict(negative, False, tuple(reasons), hazard, bool(named), named)


# -- severity -------------------------------------------------------------------------------


def severity(
    *,
    nps: int | None,
    csat: int | None,
    text: str | None,
    earlier_incidents: int = 0,
) -> Severity:
    """Critical: a safety matter, or the customer's second negative (another incident)
    within 90 days; high: NPS 0-3 or CSAT 1; else normal."""
    if safety_matter(text) is not None or earlier_incidents > 0:
        return "critical"
    if (nps is not None and nps <= 3) or csat == 1:
        return "high"
    return "normal"


SEVERITY_RANK: dict[str, int] = {"normal": 0, "high": 1, "critical": 2}


def graver(a: Severity, b: Severity) -> Severity:
    return a if SEVERITY_RANK[a] >= SEVERITY_RANK[b] else b


def incident_key(customer_id: str, repair_order_id: str | None) -> str:
    """One incident per customer and visit (or the customer, when no visit is known)."""
    return f"{customer_id}|ro:{repair_order_id}" if repair_order_id else f"{customer_id}|customer"
