"""The sentence families of the demo sentiment dataset: each takes (rng, domain, label) and returns a sentence
whose label is `label`, or None when the family does not fit. Training and held-out splits have their own."""

from __future__ import annotations

import random

from auditor.demo.sentiment_data.grammar import (
    HELDOUT_INTENSIFIERS, HELDOUT_PEOPLE, HELDOUT_TAILS, NEG, POS, TRAIN_INTENSIFIERS, TRAIN_PEOPLE, TRAIN_TAILS,
    Domain, article, be, cap, clause, gradable, maybe_intensify, more_adjs, other, pick_aspect, pick_tail, pick_thing,
    pick_verdict, pronoun, single_adjs,
)

# ---------------------------------------------------------------------------
# Training template families.  Each takes (rng, domain, label) and returns a
# sentence whose label is `label`, or None when the family does not fit.
# ---------------------------------------------------------------------------

def train_simple(rng: random.Random, d: Domain, label: str) -> str:
    a = rng.choice(d.aspects)
    adj = maybe_intensify(rng, rng.choice(a.adjs[label]), label, TRAIN_INTENSIFIERS)
    frame = rng.randrange(3)
    if frame == 0:
        return cap(clause(a, adj, d.past)) + rng.choice([".", ".", "!"])
    if frame == 1:
        return f"I found {a.phrase} {adj}."
    return f"In my opinion, {clause(a, adj, d.past)}."


def train_list(rng: random.Random, d: Domain, label: str) -> str:
    aspects = rng.sample(d.aspects, rng.choice([2, 2, 3]))
    clauses = [clause(a, rng.choice(a.adjs[label]), d.past) for a in aspects]
    if len(clauses) == 2:
        return cap(f"{clauses[0]} and {clauses[1]}.")
    return cap(f"{clauses[0]}, {clauses[1]} and {clauses[2]}.")


def train_but(rng: random.Random, d: Domain, label: str) -> str:
    """Contrast: the clause after "but" carries the label."""
    a1, a2 = rng.sample(d.aspects, 2)
    first = clause(a1, rng.choice(a1.adjs[other(label)]), d.past)
    if rng.random() < 0.5:
        adj = maybe_intensify(rng, rng.choice(a2.adjs[label]), label, TRAIN_INTENSIFIERS)
        tail = pick_tail(rng, TRAIN_TAILS, label, keep_plain=0.35)
        return cap(f"{first}, but {clause(a2, adj, d.past)}{tail}.")
    thing, plural = pick_thing(rng, d)
    verdict = pick_verdict(rng, d, label, first)
    return cap(f"{first}, but overall {thing} {be(plural, d.past)} {verdict}.")


def train_although(rng: random.Random, d: Domain, label: str) -> str:
    """Contrast: the main clause after the "although" clause carries the label."""
    a1, a2 = rng.sample(d.aspects, 2)
    first = clause(a1, rng.choice(a1.adjs[other(label)]), d.past)
    if rng.random() < 0.5:
        tail = pick_tail(rng, TRAIN_TAILS, label, keep_plain=0.25)
        return f"Although {first}, {clause(a2, rng.choice(a2.adjs[label]), d.past)}{tail}."
    thing, plural = pick_thing(rng, d)
    verdict = pick_verdict(rng, d, label, first)
    return f"Although {first}, {thing} {be(plural, d.past)} {verdict} overall."


def train_negation(rng: random.Random, d: Domain, label: str) -> str:
    short = rng.random() < 0.5
    if label == NEG:  # "The room was not clean at all."
        a = pick_aspect(rng, d, single_adjs, POS)
        neg_be = be(a.plural, d.past, negated=True, short=short)
        return cap(f"{a.phrase} {neg_be} {rng.choice(single_adjs(a, POS))} at all.")
    if rng.random() < 0.3:  # "This phone isn't bad at all."
        thing, plural = pick_thing(rng, d)
        tail = rng.choice(["", " for the price"])
        return cap(f"{thing} {be(plural, d.past, True, short)} bad at all{tail}.")
    a = pick_aspect(rng, d, single_adjs, NEG)
    neg_be = be(a.plural, d.past, negated=True, short=short)
    bad = rng.choice(single_adjs(a, NEG))
    good = rng.choice(a.adjs[POS])
    return cap(f"{a.phrase} {neg_be} {bad} at all; in fact, "
               f"{pronoun(a.plural)} {be(a.plural, d.past)} {good}.")


def train_revisit(rng: random.Random, d: Domain, label: str) -> str:
    thing, plural = pick_thing(rng, d)
    if rng.random() < 0.5:
        if label == POS:
            adverb = rng.choice(["happily", "gladly", "definitely"])
            return f"I would {adverb} {d.revisit} {thing} again."
        return f"I would never {d.revisit} {thing} again."
    verdict = rng.choice(d.overall[label])
    will = "would happily" if label == POS else "would never"
    return cap(f"{thing} {be(plural, d.past)} {verdict}, and I {will} {d.revisit_it} again.")


def train_recommend(rng: random.Random, d: Domain, label: str) -> str:
    thing, _ = pick_thing(rng, d)
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
        thing, plural = pick_thing(rng, d)
        degree = rng.choice(["far", "much", "a lot"])
        return cap(f"{thing} {be(plural, d.past)} {degree} {word} than {rng.choice(d.comps)}.")
    a = rng.choice([a for a in d.aspects if a.gradable])
    return cap(f"{a.phrase} {be(a.plural, d.past)} {word} than I expected.")


def train_question(rng: random.Random, d: Domain, label: str) -> str:
    if rng.random() < 0.5:
        verdict = rng.choice(d.overall[label])
        return f"What {article(verdict)} {verdict} {d.noun}!"
    a = pick_aspect(rng, d, single_adjs, label)
    adj = rng.choice(single_adjs(a, label))
    if label == NEG:
        return f"Why {be(a.plural, d.past)} {a.phrase} so {adj}?"
    return f"Who knew {a.phrase} could be so {adj}?"


def train_third_person(rng: random.Random, d: Domain, label: str) -> str:
    person = rng.choice(TRAIN_PEOPLE)
    if rng.random() < 0.5:
        thing, _ = pick_thing(rng, d)
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
    a = pick_aspect(rng, d, single_adjs, label)
    verb = ("love" if label == POS else "hate") + ("d" if d.past else "")
    return f"I {verb} how {rng.choice(single_adjs(a, label))} {a.phrase} {be(a.plural, d.past)}."


def held_nothing_about(rng: random.Random, d: Domain, label: str) -> str:
    """Negation by "nothing": "There was nothing dull about the guide." is positive."""
    a = pick_aspect(rng, d, single_adjs, other(label))
    there = "There was" if d.past else "There is"
    return f"{there} nothing {rng.choice(single_adjs(a, other(label)))} about {a.phrase}."


def held_could_not(rng: random.Random, d: Domain, label: str) -> str:
    if label == POS:  # "The guide could not have been more knowledgeable."
        a = pick_aspect(rng, d, more_adjs, POS)
        more = "could not have been more" if d.past else "couldn't be more"
        return cap(f"{a.phrase} {more} {rng.choice(more_adjs(a, POS))}.")
    a = pick_aspect(rng, d, gradable, POS)  # "The brakes are not remotely dependable."
    neg_be = be(a.plural, d.past, True, rng.random() < 0.5)
    return cap(f"{a.phrase} {neg_be} remotely {rng.choice(gradable(a, POS))}.")


def held_contrast(rng: random.Random, d: Domain, label: str) -> str:
    a1, a2 = rng.sample(d.aspects, 2)
    first = clause(a1, rng.choice(a1.adjs[other(label)]), d.past)
    thing, plural = pick_thing(rng, d)
    verdict = pick_verdict(rng, d, label, first)
    frame = rng.randrange(3)
    if frame == 0:
        adj = maybe_intensify(rng, rng.choice(a2.adjs[label]), label, HELDOUT_INTENSIFIERS)
        tail = pick_tail(rng, HELDOUT_TAILS, label, keep_plain=0.25)
        return f"Even though {first}, {clause(a2, adj, d.past)}{tail}."
    if frame == 1:
        return f"Granted, {first}, but {thing} {be(plural, d.past)} {verdict} all the same."
    return cap(f"{first}; however, {thing} {be(plural, d.past)} {verdict} on the whole.")


def held_never_better(rng: random.Random, d: Domain, label: str) -> str:
    word = "better" if label == POS else "worse"
    if rng.random() < 0.5:
        return f"I have never {d.done} {article(word)} {word} {d.np}."
    thing, plural = pick_thing(rng, d)
    step = "a huge step up from" if label == POS else "a real step down from"
    return cap(f"{thing} {be(plural, d.past)} {step} {rng.choice(d.comps)}.")


def held_worth(rng: random.Random, d: Domain, label: str) -> str:
    thing, plural = pick_thing(rng, d)
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
        a = pick_aspect(rng, d, single_adjs, NEG)
        adj = rng.choice(single_adjs(a, NEG))
        if d.past:
            return f"How could {a.phrase} be so {adj}?"
        return f"How can {a.phrase} be this {adj}?"
    if d.try_verb is None:
        return None
    if rng.random() < 0.5:
        thing, _ = pick_thing(rng, d)
        return f"Why did I wait so long to {d.try_verb} {thing}?"
    return f"Is there a better {d.np} anywhere?"


def held_third_person(rng: random.Random, d: Domain, label: str) -> str:
    a = rng.choice(d.aspects)
    adj = maybe_intensify(rng, rng.choice(a.adjs[label]), label, HELDOUT_INTENSIFIERS)
    if rng.random() < 0.4:
        return f"Everyone in our group agreed that {clause(a, adj, d.past)}."
    person, pron = rng.choice(HELDOUT_PEOPLE)
    said = "promised" if label == POS else "warned me"
    return f"{person} {said} that {clause(a, adj, True)}, and {pron} was right."


def held_short(rng: random.Random, d: Domain, label: str) -> str:
    verdict = rng.choice(d.overall[label])
    if d.event and rng.random() < 0.5:
        return f"{cap(verdict)} from start to finish."
    return f"{cap(article(verdict))} {verdict} {d.np}{rng.choice(['.', '!'])}"


def held_expectations(rng: random.Random, d: Domain, label: str) -> str:
    thing, _ = pick_thing(rng, d)
    if label == POS:
        return cap(f"{thing} exceeded all my expectations.")
    a = rng.choice(d.aspects)
    return cap(f"{thing} let me down, mostly because {clause(a, rng.choice(a.adjs[NEG]), d.past)}.")


HELDOUT_FAMILIES = [held_love_how, held_nothing_about, held_could_not, held_contrast,
                    held_never_better, held_worth, held_question, held_third_person,
                    held_short, held_expectations]
