"""The built-in sentiment probe set: short English sentences labelled positive or negative, written for this
project (nothing is copied from an existing dataset or site).

Every text audit probes for sentence sentiment with these sentences, whatever the audit data is. For the
MiniLM demo, whose head was trained on `auditor/demo/data/sentiment_train.csv`, the probe must not be
circular, so this set shares neither sentence frames nor content words with that training file: its own
domains (barbers, flights, laptops, coats, podcasts, ballet, vets, sofas), its own adjectives, verbs and
intensifiers, and frames whose sequence of function words no training sentence has
(`tests/analyses/probes/test_sentiment_set.py` checks both against the training file).

How the set is built:
1. Hand-written sentences, each labelled by hand.
2. Template sentences, half positive and half negative: a frame family is chosen round-robin, a domain at
   random, and the slots are filled from that domain's parts and the adjectives that fit each part.
   Half the families are plain verdicts (a relative's opinion, questions, exclamations, two parts judged
   alike); the other half negate (a negated positive is negative and vice versa: "Not once did the zip
   strike me as fiddly.") or contrast, and there the label follows the clause the sentence says decides
   ("Whereas ..., ..., which decided it for me.", "Despite ...", "... yet on balance I am ...").
3. Duplicates are dropped, rows are shuffled with a fixed seed and written as CSV (`text,label`).

Run `python -m auditor.analyses.probes.sentiment_set` to rewrite `data/sentiment_probe.csv`; it is reproduced byte
for byte.
"""

from __future__ import annotations

import csv
import io
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PROBE_PATH = Path(__file__).resolve().parent / "data" / "sentiment_probe.csv"
SEED = 5309
PER_LABEL = 160
POS, NEG = "positive", "negative"

FUNCTION_WORDS = frozenset("""
a an the this that these those my our your his her their its it i we you he she they me us him them
is are was were be been am has have had do does did will would could should can may might must not no
never nothing nobody none nor isn't aren't wasn't weren't don't doesn't didn't won't wouldn't couldn't
can't hasn't haven't and but or yet although though whereas because so if than as of in on at to for with
from by about after before into over up out off down across through throughout within without like again
once whenever all any every each both more most very too quite just
only even still also there here then when what which who how why one much such own other else ever
anyone anything everything
""".split())
"""Words every English sentence needs; all other words are content words and must be new."""

_WORD = re.compile(r"[a-z]+(?:['-][a-z]+)*")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def skeleton(text: str) -> tuple[str, ...]:
    """The sentence frame: function words kept, each content word a slot."""
    return tuple(w if w in FUNCTION_WORDS else "_" for w in words(text))


@dataclass(frozen=True)
class Part:
    """Something a review comments on, with adjectives that fit it."""

    phrase: str
    plural: bool
    good: tuple[str, ...]
    bad: tuple[str, ...]

    def adjectives(self, label: str) -> tuple[str, ...]:
        return self.good if label == POS else self.bad

    @property
    def bare(self) -> str:
        return self.phrase.removeprefix("the ")


@dataclass(frozen=True)
class Domain:
    past: bool
    items: tuple[str, ...]
    parts: tuple[Part, ...]


def _p(phrase: str, plural: bool, good: str, bad: str) -> Part:
    return Part(phrase, plural, tuple(good.split()), tuple(bad.split()))


DOMAINS = (
    Domain(True, ("this barber", "the barbershop on the corner"), (
        _p("the trim", False, "neat precise tidy", "lopsided patchy botched"),
        _p("the shave", False, "gentle flawless", "scratchy painful"),
        _p("the barber", False, "skilful amiable attentive", "surly hasty gruff"),
        _p("the mirrors", True, "gleaming immaculate", "smeary grimy"),
    )),
    Domain(True, ("this flight", "the overnight flight", "the airline"), (
        _p("the cabin crew", False, "gracious considerate attentive", "brusque indifferent surly"),
        _p("the legroom", False, "ample plentiful", "miserly inadequate"),
        _p("the boarding", False, "orderly swift", "chaotic disorderly"),
        _p("the landing", False, "gentle steady", "bumpy jarring"),
        _p("the seats", True, "comfy plush", "narrow rigid threadbare"),
    )),
    Domain(False, ("this laptop", "this ultrabook"), (
        _p("the keyboard", False, "springy precise pleasant", "mushy rattly sticky"),
        _p("the trackpad", False, "silky precise", "jumpy erratic"),
        _p("the fan", False, "whisper-quiet hushed", "whiny shrill droning"),
        _p("the hinge", False, "sturdy firm", "loose shaky"),
        _p("the display", False, "radiant luminous", "murky faded"),
    )),
    Domain(False, ("this jacket", "the winter coat", "this raincoat"), (
        _p("the zip", False, "sturdy robust", "fiddly stubborn"),
        _p("the stitching", False, "impeccable neat", "frayed shoddy"),
        _p("the fabric", False, "soft breathable supple", "scratchy itchy coarse"),
        _p("the pockets", True, "deep roomy", "skimpy pokey"),
        _p("the hood", False, "snug adjustable", "floppy baggy"),
    )),
    Domain(False, ("this podcast", "the weekly history podcast"), (
        _p("the presenters", True, "articulate charismatic engaging", "smug rambling shrill"),
        _p("the episodes", True, "absorbing thoughtful informative", "padded aimless rambling"),
        _p("the audio", False, "pristine balanced", "hissy muddy distorted"),
        _p("the interviews", True, "fascinating insightful", "tiresome dreary"),
    )),
    Domain(True, ("this ballet", "the gala performance"), (
        _p("the dancers", True, "nimble poised radiant", "leaden hesitant ragged"),
        _p("the costumes", True, "exquisite dazzling ornate", "tatty drab tacky"),
        _p("the choreography", False, "inventive daring fluid", "stilted muddled plodding"),
        _p("the orchestra", False, "lush superlative", "ragged lacklustre"),
    )),
    Domain(True, ("this vet", "the veterinary clinic", "the animal hospital"), (
        _p("the examination", False, "gentle unhurried painstaking", "hurried cursory perfunctory"),
        _p("the nurses", True, "kind reassuring gentle", "curt indifferent brusque"),
        _p("the advice", False, "sensible practical", "vague contradictory muddled"),
        _p("the fees", True, "modest affordable", "steep exorbitant eye-watering"),
    )),
    Domain(False, ("this sofa", "the corner sofa", "this armchair"), (
        _p("the cushions", True, "plump springy", "saggy flattened"),
        _p("the upholstery", False, "sumptuous durable", "threadbare tatty"),
        _p("the springs", True, "resilient firm", "creaking sagging"),
        _p("the legs", True, "solid sturdy", "wobbly rickety"),
    )),
)

OVERALL = {POS: ("terrific", "marvellous", "splendid", "fabulous", "first-class"),
           NEG: ("atrocious", "abysmal", "appalling", "lousy", "dire")}
VERDICT = {POS: ("thrilled", "pleased", "content"), NEG: ("fed up", "unhappy", "dissatisfied")}
DEGREE = ("extremely", "immensely", "decidedly")
RELATIVES = (("aunt", "she"), ("uncle", "he"), ("sister", "she"), ("daughter", "she"), ("partner", "he"))
CLAIMS = ("insists", "swears", "reckons")


def _be(plural: bool, past: bool) -> str:
    return ("were" if plural else "was") if past else ("are" if plural else "is")


def _other(label: str) -> str:
    return NEG if label == POS else POS


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _pick_part(rng: random.Random, d: Domain, *, avoid: Part | None = None) -> Part:
    return rng.choice([p for p in d.parts if p is not avoid])


# --- families: each returns the sentence for a label ------------------------------------------------------

def plain(rng: random.Random, d: Domain, label: str) -> str:
    part = _pick_part(rng, d)
    return f"To my mind, {part.phrase} {_be(part.plural, d.past)} {rng.choice(part.adjectives(label))} through and through."


def degree(rng: random.Random, d: Domain, label: str) -> str:
    part = _pick_part(rng, d)
    return (f"We reckon {part.phrase} {_be(part.plural, d.past)} {rng.choice(DEGREE)} "
            f"{rng.choice(part.adjectives(label))}.")


def relative(rng: random.Random, d: Domain, label: str) -> str:
    part, (who, _) = _pick_part(rng, d), rng.choice(RELATIVES)
    return (f"My {who} {rng.choice(CLAIMS)} that {part.phrase} {_be(part.plural, d.past)} "
            f"{rng.choice(part.adjectives(label))}.")


def exclaim(rng: random.Random, d: Domain, label: str) -> str:
    return f"Goodness me, {rng.choice(d.items)} {_be(False, d.past)} {rng.choice(OVERALL[label])}!"


def question(rng: random.Random, d: Domain, label: str) -> str:
    item = rng.choice(d.items).split()[-1]
    return f"Is there {_article(item)} {item} anywhere more {rng.choice(OVERALL[label])} than this one?"


def verdict(rng: random.Random, d: Domain, label: str) -> str:
    return f"My verdict: {rng.choice(d.items)} {_be(False, d.past)} {rng.choice(OVERALL[label])}."


def all_in_all(rng: random.Random, d: Domain, label: str) -> str:
    first = _pick_part(rng, d)
    second = _pick_part(rng, d, avoid=first)
    return (f"All in all, {first.phrase} {_be(first.plural, d.past)} {rng.choice(first.adjectives(label))} and "
            f"{second.phrase} {_be(second.plural, d.past)} {rng.choice(second.adjectives(label))}.")


def not_once(rng: random.Random, d: Domain, label: str) -> str:
    part = _pick_part(rng, d)
    return f"Not once did {part.phrase} strike me as {rng.choice(part.adjectives(_other(label)))}."


def at_no_point(rng: random.Random, d: Domain, label: str) -> str:
    part = _pick_part(rng, d)
    return f"At no point {_be(part.plural, d.past)} {part.phrase} {rng.choice(part.adjectives(_other(label)))}."


def slightest(rng: random.Random, d: Domain, label: str) -> str:
    part = _pick_part(rng, d)
    return (f"{_cap(part.phrase)} {_be(part.plural, d.past)}n't {rng.choice(part.adjectives(_other(label)))} "
            "in the slightest.")


def household(rng: random.Random, d: Domain, label: str) -> str:
    part = _pick_part(rng, d)
    return (f"Nobody in our household would describe {part.phrase} as "
            f"{rng.choice(part.adjectives(_other(label)))}.")


def whereas(rng: random.Random, d: Domain, label: str) -> str:
    first = _pick_part(rng, d)
    second = _pick_part(rng, d, avoid=first)
    return (f"Whereas {first.phrase} {_be(first.plural, d.past)} {rng.choice(first.adjectives(_other(label)))}, "
            f"{second.phrase} {_be(second.plural, d.past)} {rng.choice(second.adjectives(label))}, "
            "which decided it for me.")


def despite(rng: random.Random, d: Domain, label: str) -> str:
    part = _pick_part(rng, d)
    return (f"Despite the {rng.choice(part.adjectives(_other(label)))} {part.bare}, {rng.choice(d.items)} "
            f"{_be(False, d.past)} {rng.choice(OVERALL[label])} all told.")


def on_balance(rng: random.Random, d: Domain, label: str) -> str:
    part = _pick_part(rng, d)
    return (f"{_cap(part.phrase)} {_be(part.plural, d.past)} {rng.choice(part.adjectives(_other(label)))}, "
            f"yet on balance I am {rng.choice(VERDICT[label])} with {rng.choice(d.items)}.")


Family = Callable[[random.Random, Domain, str], str]
FAMILIES: tuple[Family, ...] = (plain, not_once, whereas, degree, verdict, at_no_point, relative, despite, exclaim,
                                slightest, all_in_all, on_balance, question, household)
"""Half plain verdicts, half negation or contrast, in turn."""

HANDWRITTEN = {
    POS: [
        "Luckily the ferry crossing was calm and the deckhands cheerfully assisted with our luggage.",
        "Not one button has come loose on this coat, winter after winter.",
        "Our puppy trotted out of the clinic wagging her tail.",
        "The ballerinas floated across the stage as if gravity had been switched off.",
        "I hadn't anticipated giggling so much at a history podcast.",
        "This barber deserves double whatever he earns.",
        "My nephew dozed off on the sofa within seconds of sinking into it.",
        "The pilot updated us regularly, and we landed ahead of schedule.",
        "Admittedly the laptop is pricey, but it boots instantly and never stutters.",
        "Thankfully, nobody on board grumbled about anything.",
        "The coat shrugged off a downpour that drenched everybody else to the skin.",
        "The vet phoned the following morning to enquire after our cat, which we appreciated enormously.",
        "Bravo to every dancer on that stage; a spellbinding occasion.",
        "Top marks, and I seldom hand those out.",
        "Superbly crafted, handsomely upholstered, built to endure.",
        "I grinned like a child throughout the performance.",
        "Not the cheapest armchair around, yet a bargain.",
        "The laptop handles hefty spreadsheets without breaking a sweat.",
        "Those presenters could render tax law thrilling.",
        "A joy to wear on chilly mornings.",
    ],
    NEG: [
        "The seatbelt sign glowed throughout the bumpy journey and nobody explained why.",
        "A pair of buttons dropped off the raincoat before October.",
        "The barber nicked my ear and didn't even apologise.",
        "By the interval, many in the audience had slipped away.",
        "The laptop conks out by mid-morning.",
        "Nobody at the clinic bothered to ring me.",
        "The sofa turned up with a torn armrest and a missing leg.",
        "Pretty costumes can't rescue such leaden dancing.",
        "Sadly, the podcast has lost whatever spark it once had.",
        "The airline lost my suitcase and then mislaid my paperwork.",
        "Admittedly the coat appears smart, but the lining ripped within a fortnight.",
        "Never again will I trust this vet with our rabbit.",
        "An utter shambles from check-out to landing.",
        "The cushions sagged like deflated balloons after a fortnight.",
        "Zero stars if I could.",
        "Each episode drones on interminably about nothing.",
        "I requested a light trim and strolled out practically bald.",
        "The keyboard squeaks, the display flickers and the power brick crackles.",
        "Frankly, a flop from curtain-up to curtain-down.",
        "The armchair wobbles whenever anybody reclines.",
    ],
}


def build_rows() -> list[tuple[str, str]]:
    """The probe set: hand-written sentences, then templates up to `PER_LABEL` per label, shuffled."""
    rng = random.Random(SEED)
    rows: list[tuple[str, str]] = []
    seen: set[str] = set()
    for label in (POS, NEG):
        for text in HANDWRITTEN[label]:
            rows.append((text, label))
            seen.add(text)
    for label in (POS, NEG):
        made, turn, tries = sum(1 for _, y in rows if y == label), 0, 0
        while made < PER_LABEL:
            tries += 1
            if tries > 100 * PER_LABEL:
                raise RuntimeError(f"cannot make {PER_LABEL} distinct {label} sentences")
            family = FAMILIES[turn % len(FAMILIES)]
            text = family(rng, rng.choice(DOMAINS), label)
            if text in seen:
                continue
            turn += 1
            seen.add(text)
            rows.append((text, label))
            made += 1
    rng.shuffle(rows)
    return rows


def render_csv(rows: list[tuple[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["text", "label"])
    writer.writerows(rows)
    return buffer.getvalue()


def read_rows(path: Path = PROBE_PATH) -> list[tuple[str, str]]:
    """The shipped probe set, as (text, label) rows."""
    with path.open(newline="", encoding="utf-8") as f:
        return [(row["text"], row["label"]) for row in csv.DictReader(f)]


def main() -> None:
    PROBE_PATH.parent.mkdir(parents=True, exist_ok=True)
    PROBE_PATH.write_text(render_csv(build_rows()), encoding="utf-8")


if __name__ == "__main__":
    main()
