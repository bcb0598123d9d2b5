"""Reading free text: clauses, words and whether a term is negated. Pure.

A lexicon term is a phrase of one or more words ("brake", "smell gas", "never again"); a
term whose last word ends in ``*`` matches any word with that prefix ("leak*" matches
leak, leaks, leaking, leaky). Matching is on whole words, case-insensitive, within one
clause: a sentence, or the part of it on either side of "but", "though", "however".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'"})
_CLAUSE_BREAK = re.compile(
    r"[.!?;:\n\r]+|,\s*(?:but|though|although|however|yet)\b|\b(?:but|though|although|however)\b"
)
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

#: words that turn the term right after them (within a few words) into its opposite
NEGATORS: frozenset[str] = frozenset(
    {
        "no",
        "not",
        "never",
        "without",
        "none",
        "zero",
        "nothing",
        "nor",
        "neither",
        "cannot",
        "can't",
        "cant",
        "don't",
        "dont",
        "doesn't",
        "doesnt",
        "didn't",
        "didnt",
        "isn't",
        "isnt",
        "wasn't",
        "wasnt",
        "aren't",
        "arent",
        "weren't",
        "werent",
        "won't",
        "wont",
        "wouldn't",
        "wouldnt",
        "haven't",
        "havent",
        "hasn't",
        "hasnt",
        "hadn't",
        "hadnt",
        "couldn't",
        "couldnt",
        "shouldn't",
        "shouldnt",
    }
)


@dataclass(frozen=True)
class Term:
    """One lexicon entry: its words (the last may be a prefix) and what it stands for."""

    words: tuple[str, ...]
    prefix: bool

    @classmethod
    def parse(cls, text: str) -> Term:
        words = tuple(text.lower().split())
        if not words:
            raise ValueError("empty term")
        last = words[-1]
        if last.endswith("*"):
            return cls((*words[:-1], last[:-1]), True)
        return cls(words, False)

    def matches_at(self, words: Sequence[str], index: int) -> bool:
        n = len(self.words)
        if index + n > len(words):
            return False
        for offset, expected in enumerate(self.words):
            actual = words[index + offset]
            last = offset == n - 1
            if last and self.prefix:
                if not actual.startswith(expected):
                    return False
            elif actual != expected:
                return False
        return True

    def __str__(self) -> str:
        return " ".join(self.words) + ("*" if self.prefix else "")


def terms(entries: Iterable[str]) -> tuple[Term, ...]:
    return tuple(Term.parse(e) for e in entries)


def normalise(text: str) -> str:
    return text.translate(_APOSTROPHES).lower()


def clauses(text: str) -> list[list[str]]:
    """The words of each clause of ``text`` (lowercase, apostrophes kept in contractions)."""
    out = []
    for part in _CLAUSE_BREAK.split(normalise(text)):
        found = _WORD.findall(part)
        if found:
            out.append(found)
    return out


@dataclass(frozen=True)
class Hit:
    term: Term
    clause: int
    index: int
    negated: bool


def find(
    clause_words: Sequence[Sequence[str]],
    lexicon: Iterable[Term],
    *,
    window: int = 3,
    blockers: frozenset[str] = NEGATORS,
) -> Iterator[Hit]:
    """Every occurrence of a lexicon term, and whether a blocker word precedes it within
    ``window`` words of its clause ("no leaks", "nothing to complain about")."""
    lexicon = tuple(lexicon)
    for c, words in enumerate(clause_words):
        for i in range(len(words)):
            for term in lexicon:
                if term.matches_at(words, i):
                    before = words[max(0, i - window) : i]
                    yield Hit(term, c, i, any(w in blockers for w in before))


def first_unnegated(
    clause_words: Sequence[Sequence[str]], lexicon: Iterable[Term], *, window: int = 3
) -> Hit | None:
    return next((h for h in find(clause_words, lexicon, window=window) if not h.negated), None)
