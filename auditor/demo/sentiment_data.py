"""Deterministic generator for the demo English sentiment dataset.

The dataset trains (``sentiment_train.csv``) and evaluates
(``sentiment_heldout.csv``) a linear sentiment head on top of the MiniLM
sentence encoder.  Every sentence here was written for this project: the
hand-written sentences and the nouns and adjectives in
``data/sentiment_sources.json``, and the templates below that the rest are
assembled from.  Nothing is copied from an existing dataset or site.

How a split is built
--------------------
1. Hand-written sentences (full, distinct, each labelled by hand) go in first.
2. Template sentences fill the split up to its target size, half ``positive``
   and half ``negative``.  A template family (simple verdict, contrast,
   negation, comparative, question, third person, ...) is chosen round-robin,
   a domain at random, and slots are filled from that domain's aspect nouns
   and adjectives.  Adjectives are attached to the aspect they describe
   ("the soup" is "bland", "the waiters" are "rude"), so sentences stay
   grammatical, and verb number and tense follow the noun and the domain.
3. Exact duplicates are dropped; the rows are shuffled and written with the
   ``csv`` module (header ``text,label``, UTF-8, ``\\n`` line endings).

Labels are never in doubt for a human reader: there is no sarcasm, and in a
contrast sentence the label follows the clause a reader weighs (the one after
"but", the main clause after "although"/"even though", or an explicit
"overall" verdict).

Why the held-out split is independent
-------------------------------------
The held-out split is *not* a random split of the training pool.  It is
written separately: its own hand-written sentences, its own domains
(headphones, museums, bicycles, plumbers, board games, concerts, against
restaurants, films, phones, hotels, books, apps and deliveries in training),
its own aspect nouns, adjectives, intensifiers and people, and its own
sentence frames ("I love how ...", "There was nothing ... about ...",
"I have never ... a better ...", "Granted, ..., but ...", ...).  A model that
merely memorised the training templates or vocabulary therefore gets no free
help on it.  Each split has its own seeded ``random.Random``, and the builder
checks that no sentence appears in both files.

Run ``python -m auditor.demo.sentiment_data`` (or this file by path) to
rewrite both CSV files; re-running reproduces them byte for byte.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeAlias

DATA_DIR = Path(__file__).resolve().parent / "data"
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


def _clause(aspect: Aspect, adj: str, past: bool) -> str:
    return f"{aspect.phrase} {be(aspect.plural, past)} {adj}"


def _thing(rng: random.Random, d: Domain) -> tuple[str, bool]:
    return rng.choice(d.things)


def _pick(rng: random.Random, d: Domain, adjs: AdjFilter = lambda a, lab: a.adjs[lab],
          label: str = POS) -> Aspect:
    """Choose an aspect of `d` that has a usable adjective for `label`."""
    usable = [a for a in d.aspects if adjs(a, label)]
    # sample(..., 1) rather than choice(): the same draws as before, so the CSVs stay byte-identical.
    return rng.sample(usable, 1)[0]


def _single(a: Aspect, label: str) -> list[str]:
    return single(a.adjs[label])


def _gradable(a: Aspect, label: str) -> list[str]:
    return [w for w in single(a.adjs[label]) if w not in ABSOLUTE]


def _more(a: Aspect, label: str) -> list[str]:
    return [w for w in a.adjs[label] if takes_more(w)]


def _maybe_intensify(rng: random.Random, adj: str, label: str, intensifiers: WordsByLabel) -> str:
    if " " in adj or adj in ABSOLUTE or rng.random() < 0.5:
        return adj
    return f"{rng.choice(intensifiers[label])} {adj}"


def _tail(rng: random.Random, tails: WordsByLabel, label: str, keep_plain: float) -> str:
    """Optionally spell out which clause of a contrast outweighs the other."""
    return "" if rng.random() < keep_plain else ", " + rng.choice(tails[label])


def _verdict(rng: random.Random, d: Domain, label: str, avoid: str) -> str:
    """An overall adjective for the whole item, not repeating `avoid`."""
    return rng.choice([w for w in d.overall[label] if w not in avoid])


def train_simple(rng: random.Random, d: Domain, label: str) -> str:
    a = rng.choice(d.aspects)
    adj = _maybe_intensify(rng, rng.choice(a.adjs[label]), label, TRAIN_INTENSIFIERS)
    frame = rng.randrange(3)
    if frame == 0:
        return cap(_clause(a, adj, d.past)) + rng.choice([".", ".", "!"])
    if frame == 1:
        return f"I found {a.phrase} {adj}."
    return f"In my opinion, {_clause(a, adj, d.past)}."


def train_list(rng: random.Random, d: Domain, label: str) -> str:
    aspects = rng.sample(d.aspects, rng.choice([2, 2, 3]))
    clauses = [_clause(a, rng.choice(a.adjs[label]), d.past) for a in aspects]
    if len(clauses) == 2:
        return cap(f"{clauses[0]} and {clauses[1]}.")
    return cap(f"{clauses[0]}, {clauses[1]} and {clauses[2]}.")


def train_but(rng: random.Random, d: Domain, label: str) -> str:
    """Contrast: the clause after "but" carries the label."""
    a1, a2 = rng.sample(d.aspects, 2)
    first = _clause(a1, rng.choice(a1.adjs[other(label)]), d.past)
    if rng.random() < 0.5:
        adj = _maybe_intensify(rng, rng.choice(a2.adjs[label]), label, TRAIN_INTENSIFIERS)
        tail = _tail(rng, TRAIN_TAILS, label, keep_plain=0.35)
        return cap(f"{first}, but {_clause(a2, adj, d.past)}{tail}.")
    thing, plural = _thing(rng, d)
    verdict = _verdict(rng, d, label, first)
    return cap(f"{first}, but overall {thing} {be(plural, d.past)} {verdict}.")


def train_although(rng: random.Random, d: Domain, label: str) -> str:
    """Contrast: the main clause after the "although" clause carries the label."""
    a1, a2 = rng.sample(d.aspects, 2)
    first = _clause(a1, rng.choice(a1.adjs[other(label)]), d.past)
    if rng.random() < 0.5:
        tail = _tail(rng, TRAIN_TAILS, label, keep_plain=0.25)
        return f"Although {first}, {_clause(a2, rng.choice(a2.adjs[label]), d.past)}{tail}."
    thing, plural = _thing(rng, d)
    verdict = _verdict(rng, d, label, first)
    return f"Although {first}, {thing} {be(plural, d.past)} {verdict} overall."


def train_negation(rng: random.Random, d: Domain, label: str) -> str:
    short = rng.random() < 0.5
    if label == NEG:  # "The room was not clean at all."
        a = _pick(rng, d, _single, POS)
        neg_be = be(a.plural, d.past, negated=True, short=short)
        return cap(f"{a.phrase} {neg_be} {rng.choice(_single(a, POS))} at all.")
    if rng.random() < 0.3:  # "This phone isn't bad at all."
        thing, plural = _thing(rng, d)
        tail = rng.choice(["", " for the price"])
        return cap(f"{thing} {be(plural, d.past, True, short)} bad at all{tail}.")
    a = _pick(rng, d, _single, NEG)
    neg_be = be(a.plural, d.past, negated=True, short=short)
    bad = rng.choice(_single(a, NEG))
    good = rng.choice(a.adjs[POS])
    return cap(f"{a.phrase} {neg_be} {bad} at all; in fact, "
               f"{pronoun(a.plural)} {be(a.plural, d.past)} {good}.")


def train_revisit(rng: random.Random, d: Domain, label: str) -> str:
    thing, plural = _thing(rng, d)
    if rng.random() < 0.5:
        if label == POS:
            adverb = rng.choice(["happily", "gladly", "definitely"])
            return f"I would {adverb} {d.revisit} {thing} again."
        return f"I would never {d.revisit} {thing} again."
    verdict = rng.choice(d.overall[label])
    will = "would happily" if label == POS else "would never"
    return cap(f"{thing} {be(plural, d.past)} {verdict}, and I {will} {d.revisit_it} again.")


def train_recommend(rng: random.Random, d: Domain, label: str) -> str:
    thing, _ = _thing(rng, d)
    if label == POS:
        frames = ["I can't recommend {t} enough.", "I would recommend {t} to anyone.",
                  "I highly recommend {t}."]
    else:
        frames = ["I wouldn't recommend {t} to anyone.", "Do not waste your money on {t}.",
                  "Avoid {t} at all costs."]
    return rng.choice(frames).format(t=thing)


def train_comparative(rng: random.Random, d: Domain, label: str) -> str:
    word = "better" if label == POS else "worse"
    if rng.random() < 0.5:
        thing, plural = _thing(rng, d)
        degree = rng.choice(["far", "much", "a lot"])
        return cap(f"{thing} {be(plural, d.past)} {degree} {word} than {rng.choice(d.comps)}.")
    a = rng.choice([a for a in d.aspects if a.gradable])
    return cap(f"{a.phrase} {be(a.plural, d.past)} {word} than I expected.")


def train_question(rng: random.Random, d: Domain, label: str) -> str:
    if rng.random() < 0.5:
        verdict = rng.choice(d.overall[label])
        return f"What {article(verdict)} {verdict} {d.noun}!"
    a = _pick(rng, d, _single, label)
    adj = rng.choice(_single(a, label))
    if label == NEG:
        return f"Why {be(a.plural, d.past)} {a.phrase} so {adj}?"
    return f"Who knew {a.phrase} could be so {adj}?"


def train_third_person(rng: random.Random, d: Domain, label: str) -> str:
    person = rng.choice(TRAIN_PEOPLE)
    if rng.random() < 0.5:
        thing, _ = _thing(rng, d)
        verb = rng.choice(["loved", "adored", "enjoyed"] if label == POS
                          else ["hated", "could not stand", "disliked"])
        return f"{person} {verb} {thing}."
    a = rng.choice(d.aspects)
    return f"{person} thought {a.phrase} {be(a.plural, True)} {rng.choice(a.adjs[label])}."


def train_short(rng: random.Random, d: Domain, label: str) -> str:
    verdict = rng.choice(d.overall[label])
    lead = rng.choice(["Really", "Truly"])
    return f"{lead} {verdict} {d.noun}{rng.choice(['.', '!'])}"


TRAIN_FAMILIES = [train_simple, train_list, train_but, train_although, train_negation,
                  train_revisit, train_recommend, train_comparative, train_question,
                  train_third_person, train_short]


# ---------------------------------------------------------------------------
# Held-out template families: different sentence frames from training
# ---------------------------------------------------------------------------

def held_love_how(rng: random.Random, d: Domain, label: str) -> str:
    a = _pick(rng, d, _single, label)
    verb = ("love" if label == POS else "hate") + ("d" if d.past else "")
    return f"I {verb} how {rng.choice(_single(a, label))} {a.phrase} {be(a.plural, d.past)}."


def held_nothing_about(rng: random.Random, d: Domain, label: str) -> str:
    """Negation by "nothing": "There was nothing dull about the guide." is positive."""
    a = _pick(rng, d, _single, other(label))
    there = "There was" if d.past else "There is"
    return f"{there} nothing {rng.choice(_single(a, other(label)))} about {a.phrase}."


def held_could_not(rng: random.Random, d: Domain, label: str) -> str:
    if label == POS:  # "The guide could not have been more knowledgeable."
        a = _pick(rng, d, _more, POS)
        more = "could not have been more" if d.past else "couldn't be more"
        return cap(f"{a.phrase} {more} {rng.choice(_more(a, POS))}.")
    a = _pick(rng, d, _gradable, POS)  # "The brakes are not remotely dependable."
    neg_be = be(a.plural, d.past, True, rng.random() < 0.5)
    return cap(f"{a.phrase} {neg_be} remotely {rng.choice(_gradable(a, POS))}.")


def held_contrast(rng: random.Random, d: Domain, label: str) -> str:
    a1, a2 = rng.sample(d.aspects, 2)
    first = _clause(a1, rng.choice(a1.adjs[other(label)]), d.past)
    thing, plural = _thing(rng, d)
    verdict = _verdict(rng, d, label, first)
    frame = rng.randrange(3)
    if frame == 0:
        adj = _maybe_intensify(rng, rng.choice(a2.adjs[label]), label, HELDOUT_INTENSIFIERS)
        tail = _tail(rng, HELDOUT_TAILS, label, keep_plain=0.25)
        return f"Even though {first}, {_clause(a2, adj, d.past)}{tail}."
    if frame == 1:
        return f"Granted, {first}, but {thing} {be(plural, d.past)} {verdict} all the same."
    return cap(f"{first}; however, {thing} {be(plural, d.past)} {verdict} on the whole.")


def held_never_better(rng: random.Random, d: Domain, label: str) -> str:
    word = "better" if label == POS else "worse"
    if rng.random() < 0.5:
        return f"I have never {d.done} {article(word)} {word} {d.np}."
    thing, plural = _thing(rng, d)
    step = "a huge step up from" if label == POS else "a real step down from"
    return cap(f"{thing} {be(plural, d.past)} {step} {rng.choice(d.comps)}.")


def held_worth(rng: random.Random, d: Domain, label: str) -> str:
    thing, plural = _thing(rng, d)
    frame = rng.randrange(3)
    if frame == 0:
        return cap(f"{thing} {be(plural, d.past, label == NEG)} {d.worth}.")
    if frame == 1 and label == POS:
        return f"I do not regret {d.gerund} {thing} for a second."
    if frame == 1:
        return f"I deeply regret {d.gerund} {thing}."
    if label == POS:
        return f"I never once regretted {d.gerund} {thing}."
    return cap(f"{thing} fell well short of my expectations.")


def held_question(rng: random.Random, d: Domain, label: str) -> str | None:
    if label == NEG:
        a = _pick(rng, d, _single, NEG)
        adj = rng.choice(_single(a, NEG))
        if d.past:
            return f"How could {a.phrase} be so {adj}?"
        return f"How can {a.phrase} be this {adj}?"
    if d.try_verb is None:
        return None
    if rng.random() < 0.5:
        thing, _ = _thing(rng, d)
        return f"Why did I wait so long to {d.try_verb} {thing}?"
    return f"Is there a better {d.np} anywhere?"


def held_third_person(rng: random.Random, d: Domain, label: str) -> str:
    a = rng.choice(d.aspects)
    adj = _maybe_intensify(rng, rng.choice(a.adjs[label]), label, HELDOUT_INTENSIFIERS)
    if rng.random() < 0.4:
        return f"Everyone in our group agreed that {_clause(a, adj, d.past)}."
    person, pron = rng.choice(HELDOUT_PEOPLE)
    said = "promised" if label == POS else "warned me"
    return f"{person} {said} that {_clause(a, adj, True)}, and {pron} was right."


def held_short(rng: random.Random, d: Domain, label: str) -> str:
    verdict = rng.choice(d.overall[label])
    if d.event and rng.random() < 0.5:
        return f"{cap(verdict)} from start to finish."
    return f"{cap(article(verdict))} {verdict} {d.np}{rng.choice(['.', '!'])}"


def held_expectations(rng: random.Random, d: Domain, label: str) -> str:
    thing, _ = _thing(rng, d)
    if label == POS:
        return cap(f"{thing} exceeded all my expectations.")
    a = rng.choice(d.aspects)
    return cap(f"{thing} let me down, mostly because {_clause(a, rng.choice(a.adjs[NEG]), d.past)}.")


HELDOUT_FAMILIES = [held_love_how, held_nothing_about, held_could_not, held_contrast,
                    held_never_better, held_worth, held_question, held_third_person,
                    held_short, held_expectations]

# ---------------------------------------------------------------------------
# Assembly
# ---------------------------------------------------------------------------

def build_split(seed: int, size: int, handwritten: WordsByLabel, families: Sequence[Family],
                domains: Sequence[Domain], exclude: Iterable[str] = ()) -> list[Row]:
    """Hand-written rows plus template rows up to `size`, balanced by label."""
    rng = random.Random(seed)
    excluded = set(exclude)
    seen: set[str] = set()
    rows: list[Row] = []
    for label in LABELS:
        for text in handwritten[label]:
            if text in seen or text in excluded:
                raise ValueError(f"duplicate hand-written sentence: {text!r}")
            seen.add(text)
            rows.append((text, label))
    for label in LABELS:
        need = size // 2 - sum(1 for _, lab in rows if lab == label)
        step = 0
        while need > 0:
            family = families[step % len(families)]
            step += 1
            if step > 200 * size:
                raise RuntimeError(f"templates exhausted for {label}")
            sentence = family(rng, rng.choice(domains), label)
            if sentence is None or sentence in seen or sentence in excluded:
                continue
            seen.add(sentence)
            rows.append((sentence, label))
            need -= 1
    rng.shuffle(rows)
    return rows


def build_rows() -> tuple[list[Row], list[Row]]:
    """Return (train_rows, heldout_rows) as lists of (text, label) tuples."""
    train = build_split(TRAIN_SEED, TRAIN_SIZE, TRAIN_HANDWRITTEN, TRAIN_FAMILIES, TRAIN_DOMAINS)
    heldout = build_split(HELDOUT_SEED, HELDOUT_SIZE, HELDOUT_HANDWRITTEN, HELDOUT_FAMILIES,
                          HELDOUT_DOMAINS, exclude=[text for text, _ in train])
    return train, heldout


def render_csv(rows: Iterable[Row]) -> str:
    """The exact text written to disk for `rows` (header `text,label`)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["text", "label"])
    writer.writerows(rows)
    return buf.getvalue()


def write_files(train_path: str | Path = TRAIN_PATH,
                heldout_path: str | Path = HELDOUT_PATH) -> tuple[list[Row], list[Row]]:
    train, heldout = build_rows()
    for path, rows in ((train_path, train), (heldout_path, heldout)):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(render_csv(rows).encode("utf-8"))
    return train, heldout


def main() -> None:
    train, heldout = write_files()
    for path, rows in ((TRAIN_PATH, train), (HELDOUT_PATH, heldout)):
        counts = {label: sum(1 for _, lab in rows if lab == label) for label in LABELS}
        print(f"{path}: {len(rows)} rows {counts}")


if __name__ == "__main__":
    main()
