"""The demo sentiment dataset's grammar: labels, word helpers, reviewed domains and their aspects, the vocabulary
and hand-written sentences read from `data/sentiment_sources.json`, and the slot fillers the sentence families share."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import TypeAlias

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
TRAIN_PATH = DATA_DIR / "sentiment_train.csv"
HELDOUT_PATH = DATA_DIR / "sentiment_heldout.csv"

TRAIN_SEED = 20240611
HELDOUT_SEED = 77031
TRAIN_SIZE = 800
HELDOUT_SIZE = 300

POS, NEG = "positive", "negative"
LABELS = (POS, NEG)

WordsByLabel: TypeAlias = dict[str, list[str]]
Row: TypeAlias = tuple[str, str]
"""One dataset row: (text, label)."""
# (phrase, plural, positive adjectives, negative adjectives[, gradable])
AspectSpec: TypeAlias = (tuple[str, bool, list[str], list[str]]
                         | tuple[str, bool, list[str], list[str], bool])


# ---------------------------------------------------------------------------
# Small grammar helpers
# ---------------------------------------------------------------------------

def cap(text: str) -> str:
    """Capitalise the first letter only (keeps proper nouns inside intact)."""
    return text[:1].upper() + text[1:]


def be(plural: bool, past: bool, negated: bool = False, short: bool = False) -> str:
    """Form of "to be" for the subject: is/are/was/were, optionally negated."""
    verb = ("were" if plural else "was") if past else ("are" if plural else "is")
    if not negated:
        return verb
    return verb + "n't" if short else verb + " not"


def pronoun(plural: bool) -> str:
    return "they" if plural else "it"


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def single(words: list[str]) -> list[str]:
    """Adjectives that take an intensifier or "not ... at all" cleanly."""
    return [w for w in words if " " not in w]


def other(label: str) -> str:
    return NEG if label == POS else POS


# Adjectives that already sit at the end of their scale: "really superb" or
# "incredibly intact" read badly, so these never get an intensifier.
ABSOLUTE = {"superb", "flawless", "perfect", "excellent", "remarkable", "faultless", "ideal",
            "nonexistent", "heavenly", "breathtaking", "stunning", "intact", "disastrous",
            "useless", "pathetic", "outrageous", "filthy", "freezing", "soaked", "crushed",
            "damaged", "broken", "botched", "huge", "tiny", "enormous", "minimal", "first-rate",
            "electrifying", "unforgettable", "magnificent", "deafening", "extortionate",
            "endless", "constant"}


def takes_more(adj: str) -> bool:
    """Whether "more <adj>" reads naturally (long adjectives, not "more quick")."""
    return " " not in adj and (len(adj) >= 8 or adj.endswith(
        ("ful", "ous", "ive", "ing", "ed", "ent", "ant", "al", "ic")))


class Aspect:
    """A thing a review comments on, with adjectives that fit it.

    `gradable` is False for things that cannot be "better than I expected"
    (a parcel either arrives intact or it does not)."""

    def __init__(self, phrase: str, plural: bool, pos: list[str], neg: list[str],
                 gradable: bool = True) -> None:
        self.phrase, self.plural, self.gradable = phrase, plural, gradable
        self.adjs: WordsByLabel = {POS: pos, NEG: neg}


class Domain:
    """One reviewed domain: what is reviewed and how people talk about it."""

    # Domain-specific phrasing, set from ``**extra`` (declared only, so a domain
    # without one still raises AttributeError).  Training domains:
    noun: str
    revisit: str
    revisit_it: str
    # Held-out domains:
    np: str
    done: str
    gerund: str
    try_verb: str | None
    worth: str
    event: bool

    def __init__(self, name: str, past: bool, things: list[tuple[str, bool]],
                 aspects: list[AspectSpec], overall: WordsByLabel, comps: list[str],
                 **extra: object) -> None:
        self.name = name
        self.past = past  # reviews of visits/events are told in the past tense
        self.things = things  # (noun phrase, plural) for the whole item
        self.aspects = [Aspect(*a) for a in aspects]
        self.overall = overall  # {label: adjectives for the whole item}
        self.comps = comps  # things to compare against
        for key, value in extra.items():
            setattr(self, key, value)


# ---------------------------------------------------------------------------
# The vocabulary and the hand-written sentences, as data (written for this project)
# ---------------------------------------------------------------------------

SOURCES = DATA_DIR / "sentiment_sources.json"
"""Per split: its domains (what is reviewed: things, aspects with their adjectives, overall verdicts,
comparisons, domain phrasing), intensifiers, tails, people and hand-written sentences."""
_DOMAIN_FIELDS = ("name", "past", "things", "aspects", "overall", "comps")


def _domains(specs: list[dict[str, object]]) -> list[Domain]:
    return [Domain(str(s["name"]), bool(s["past"]), [tuple(t) for t in s["things"]],  # type: ignore[attr-defined]
                   [tuple(a) for a in s["aspects"]], s["overall"], s["comps"],  # type: ignore[attr-defined,arg-type]
                   **{k: v for k, v in s.items() if k not in _DOMAIN_FIELDS}) for s in specs]


_SOURCES = json.loads(SOURCES.read_text(encoding="utf-8"))
TRAIN_DOMAINS = _domains(_SOURCES["train"]["domains"])
TRAIN_INTENSIFIERS: WordsByLabel = _SOURCES["train"]["intensifiers"]
TRAIN_TAILS: WordsByLabel = _SOURCES["train"]["tails"]
"""Tails that say which side of a two-aspect contrast outweighs the other."""
TRAIN_PEOPLE: list[str] = _SOURCES["train"]["people"]
TRAIN_HANDWRITTEN: WordsByLabel = _SOURCES["train"]["handwritten"]
HELDOUT_DOMAINS = _domains(_SOURCES["heldout"]["domains"])
HELDOUT_INTENSIFIERS: WordsByLabel = _SOURCES["heldout"]["intensifiers"]
HELDOUT_TAILS: WordsByLabel = _SOURCES["heldout"]["tails"]
HELDOUT_PEOPLE: list[tuple[str, str]] = [(p[0], p[1]) for p in _SOURCES["heldout"]["people"]]
HELDOUT_HANDWRITTEN: WordsByLabel = _SOURCES["heldout"]["handwritten"]


# ---------------------------------------------------------------------------
# Training template families.  Each takes (rng, domain, label) and returns a
# sentence whose label is `label`, or None when the family does not fit.
# ---------------------------------------------------------------------------

Family: TypeAlias = Callable[[random.Random, Domain, str], str | None]
# The adjectives of an aspect that a frame can use for a label.
AdjFilter: TypeAlias = Callable[[Aspect, str], list[str]]


def clause(aspect: Aspect, adj: str, past: bool) -> str:
    return f"{aspect.phrase} {be(aspect.plural, past)} {adj}"


def pick_thing(rng: random.Random, d: Domain) -> tuple[str, bool]:
    return rng.choice(d.things)


def pick_aspect(rng: random.Random, d: Domain, adjs: AdjFilter = lambda a, lab: a.adjs[lab],
          label: str = POS) -> Aspect:
    """Choose an aspect of `d` that has a usable adjective for `label`."""
    usable = [a for a in d.aspects if adjs(a, label)]
    # sample(..., 1) rather than choice(): the same draws as before, so the CSVs stay byte-identical.
    return rng.sample(usable, 1)[0]


def single_adjs(a: Aspect, label: str) -> list[str]:
    return single(a.adjs[label])


def gradable(a: Aspect, label: str) -> list[str]:
    return [w for w in single(a.adjs[label]) if w not in ABSOLUTE]


def more_adjs(a: Aspect, label: str) -> list[str]:
    return [w for w in a.adjs[label] if takes_more(w)]


def maybe_intensify(rng: random.Random, adj: str, label: str, intensifiers: WordsByLabel) -> str:
    if " " in adj or adj in ABSOLUTE or rng.random() < 0.5:
        return adj
    return f"{rng.choice(intensifiers[label])} {adj}"


def pick_tail(rng: random.Random, tails: WordsByLabel, label: str, keep_plain: float) -> str:
    """Optionally spell out which clause of a contrast outweighs the other."""
    return "" if rng.random() < keep_plain else ", " + rng.choice(tails[label])


def pick_verdict(rng: random.Random, d: Domain, label: str, avoid: str) -> str:
    """An overall adjective for the whole item, not repeating `avoid`."""
    return rng.choice([w for w in d.overall[label] if w not in avoid])
