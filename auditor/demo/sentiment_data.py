"""Deterministic generator for the demo English sentiment dataset.

The dataset trains (``sentiment_train.csv``) and evaluates
(``sentiment_heldout.csv``) a linear sentiment head on top of the MiniLM
sentence encoder.  Every sentence here was written for this project: the
hand-written sentences below, and the templates, nouns and adjectives that the
rest are assembled from.  Nothing is copied from an existing dataset or site.

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
# Training domains (restaurants, films, phones, hotels, books, apps, delivery)
# ---------------------------------------------------------------------------

TRAIN_DOMAINS = [
    Domain(
        "restaurant", True,
        [("this restaurant", False), ("the new bistro on the high street", False),
         ("this little noodle bar", False), ("the pizzeria near the station", False)],
        [("the soup", False, ["delicious", "rich and flavourful", "piping hot", "perfectly seasoned"],
          ["cold", "bland", "far too salty", "watery"]),
         ("the waiters", True, ["friendly", "attentive", "polite", "helpful"],
          ["rude", "slow", "careless", "unhelpful"]),
         ("the steak", False, ["tender", "juicy", "cooked perfectly"],
          ["tough", "overcooked", "dry", "chewy"]),
         ("the desserts", True, ["heavenly", "delicious", "beautifully presented"],
          ["stale", "sickly", "disappointing"]),
         ("the portions", True, ["generous", "huge"], ["tiny", "stingy"]),
         ("the prices", True, ["fair", "reasonable"], ["outrageous", "far too high"]),
         ("the dining room", False, ["cosy", "spotless", "charming"], ["noisy", "cramped", "filthy"])],
        {POS: ["wonderful", "lovely", "fantastic"], NEG: ["dreadful", "terrible", "disappointing"]},
        ["the place across the road", "most restaurants in town", "the diner we tried last month"],
        noun="restaurant", revisit="go back to", revisit_it="go back",
    ),
    Domain(
        "film", False,
        [("this film", False), ("the new thriller", False), ("this documentary", False),
         ("the animated comedy", False)],
        [("the plot", False, ["gripping", "clever", "original", "moving"],
          ["predictable", "confusing", "silly", "thin"]),
         ("the acting", False, ["superb", "convincing", "natural"], ["wooden", "stiff", "unconvincing"]),
         ("the soundtrack", False, ["beautiful", "haunting", "memorable"],
          ["forgettable", "grating", "intrusive"]),
         ("the dialogue", False, ["sharp", "witty", "believable"], ["clumsy", "awkward", "cheesy"]),
         ("the special effects", True, ["stunning", "seamless"], ["cheap", "distracting"]),
         ("the pacing", False, ["tight", "brisk"], ["sluggish", "uneven", "tedious"]),
         ("the ending", False, ["satisfying", "powerful"], ["rushed", "pointless", "flat"])],
        {POS: ["brilliant", "beautiful", "remarkable"], NEG: ["tedious", "dismal", "forgettable"]},
        ["the first film in the series", "most films this year", "the director's last film"],
        noun="film", revisit="watch", revisit_it="watch it",
    ),
    Domain(
        "phone", False,
        [("this phone", False), ("the new handset", False), ("this budget smartphone", False),
         ("the latest model", False)],
        [("the screen", False, ["gorgeous", "bright", "sharp", "vivid"], ["dim", "grainy", "fragile"]),
         ("the battery", False, ["reliable", "excellent", "long-lasting"], ["weak", "useless", "pathetic"]),
         ("the photos", True, ["crisp", "detailed", "gorgeous"], ["blurry", "grainy", "washed out"]),
         ("the speakers", True, ["loud", "clear"], ["tinny", "muffled", "quiet"]),
         ("the software", False, ["smooth", "fast", "intuitive"], ["buggy", "sluggish", "bloated"]),
         ("the charger", False, ["fast", "compact"], ["flimsy", "slow"])],
        {POS: ["fantastic", "superb", "great"], NEG: ["terrible", "awful", "disappointing"]},
        ["my old phone", "most phones at this price", "the previous model"],
        noun="phone", revisit="buy", revisit_it="buy it",
    ),
    Domain(
        "hotel", True,
        [("this hotel", False), ("the seaside hotel", False), ("this guesthouse", False),
         ("the airport hotel", False)],
        [("the room", False, ["spotless", "spacious", "comfortable", "quiet"],
          ["dirty", "cramped", "stuffy", "noisy"]),
         ("the bed", False, ["comfortable", "huge", "soft"], ["lumpy", "hard", "tiny"]),
         ("the staff", True, ["welcoming", "helpful", "friendly", "courteous"],
          ["rude", "unfriendly", "dismissive"]),
         ("the breakfast", False, ["excellent", "generous", "fresh"], ["cold", "meagre", "greasy"]),
         ("the pool", False, ["beautiful", "clean", "warm"], ["dirty", "freezing", "crowded"]),
         ("the view", False, ["breathtaking", "stunning", "lovely"], ["depressing", "ugly"]),
         ("the location", False, ["perfect", "convenient", "ideal"], ["inconvenient", "remote"])],
        {POS: ["lovely", "wonderful", "delightful"], NEG: ["shabby", "grim", "dreadful"]},
        ["the hotel we stayed at last year", "most hotels in the area", "the chain hotels nearby"],
        noun="hotel", revisit="stay at", revisit_it="stay there",
    ),
    Domain(
        "book", False,
        [("this book", False), ("the novel", False), ("this memoir", False),
         ("the author's latest book", False)],
        [("the characters", True, ["vivid", "believable", "memorable", "likeable"],
          ["flat", "dull", "unlikeable"]),
         ("the writing", False, ["elegant", "beautiful", "lyrical"], ["clunky", "dull", "repetitive"]),
         ("the story", False, ["gripping", "touching", "original"], ["boring", "predictable", "tedious"]),
         ("the ending", False, ["perfect", "satisfying"], ["abrupt", "silly", "unsatisfying"]),
         ("the translation", False, ["faultless", "graceful"], ["awkward", "sloppy"]),
         ("the research", False, ["meticulous", "thorough"], ["shallow", "careless"])],
        {POS: ["wonderful", "beautiful", "brilliant"], NEG: ["boring", "tedious", "terrible"]},
        ["her first novel", "most books in the genre", "the previous book in the series"],
        noun="book", revisit="read", revisit_it="read it",
    ),
    Domain(
        "app", False,
        [("this app", False), ("the banking app", False), ("this fitness app", False),
         ("the new version of the app", False)],
        [("the interface", False, ["clean", "intuitive", "simple"], ["cluttered", "confusing", "ugly"]),
         ("the notifications", True, ["helpful", "useful", "timely"], ["annoying", "constant", "pointless"]),
         ("the login process", False, ["quick", "painless", "simple"], ["slow", "frustrating", "broken"]),
         ("the customer support", False, ["responsive", "helpful", "excellent"],
          ["useless", "unresponsive", "slow"]),
         ("the latest update", False, ["excellent", "smooth"], ["buggy", "disastrous"]),
         ("the adverts", True, ["rare", "unobtrusive"], ["intrusive", "relentless", "endless"])],
        {POS: ["brilliant", "handy", "fantastic"], NEG: ["useless", "frustrating", "awful"]},
        ["the old version", "every other app I have tried", "the app my bank used before"],
        noun="app", revisit="use", revisit_it="use it",
    ),
    Domain(
        "delivery", True,
        [("this delivery service", False), ("the courier company", False),
         ("the grocery delivery service", False)],
        [("the driver", False, ["polite", "punctual", "careful"], ["rude", "late", "careless"]),
         ("the parcel", False, ["well packed", "in perfect condition"], ["damaged", "crushed", "soaked"],
          False),
         ("the tracking", False, ["accurate", "reliable"], ["inaccurate", "useless"]),
         ("the customer service", False, ["helpful", "quick", "friendly"], ["useless", "slow", "rude"]),
         ("the groceries", True, ["fresh", "well chosen"], ["bruised", "squashed", "out of date"])],
        {POS: ["reliable", "brilliant", "speedy"], NEG: ["unreliable", "hopeless", "shambolic"]},
        ["the service we used before", "most couriers", "the big supermarket deliveries"],
        noun="delivery service", revisit="use", revisit_it="use it",
    ),
]

TRAIN_INTENSIFIERS = {POS: ["really", "truly", "incredibly", "genuinely"],
                      NEG: ["really", "incredibly", "awfully", "seriously"]}
# Tails that say which side of a two-aspect contrast outweighs the other.
TRAIN_TAILS = {POS: ["and that more than made up for it", "and that mattered more to me"],
               NEG: ["and that spoiled the whole thing", "and that ruined it for me"]}
TRAIN_PEOPLE = ["My wife", "My brother", "My best friend", "Our kids", "My colleague", "My mum"]


# ---------------------------------------------------------------------------
# Held-out domains (headphones, museums, bicycles, plumbers, board games,
# concerts): own nouns, adjectives, intensifiers and people
# ---------------------------------------------------------------------------

HELDOUT_DOMAINS = [
    Domain(
        "headphones", False,
        [("these headphones", True), ("the wireless earbuds", True),
         ("this noise-cancelling headset", False)],
        [("the bass", False, ["punchy", "deep", "rich"], ["muddy", "boomy", "thin"]),
         ("the noise cancelling", False, ["superb", "remarkable"], ["feeble", "ineffective"]),
         ("the ear cushions", True, ["plush", "soft"], ["scratchy", "stiff", "flimsy"]),
         ("the microphone", False, ["clear", "crisp"], ["crackly", "muffled"]),
         ("the Bluetooth connection", False, ["stable", "solid", "dependable"],
          ["patchy", "unstable", "unreliable"]),
         ("the headband", False, ["sturdy", "light"], ["creaky", "tight", "brittle"])],
        {POS: ["outstanding", "superb", "excellent"], NEG: ["flimsy", "disappointing", "tinny"]},
        ["my old earbuds", "the pair I had before", "headphones costing twice as much"],
        np="pair of headphones", done="owned", gerund="buying", try_verb="buy",
        worth="worth the money", event=False,
    ),
    Domain(
        "museum", True,
        [("this museum", False), ("the maritime museum", False), ("the new science gallery", False)],
        [("the exhibits", True, ["fascinating", "captivating", "well labelled"],
          ["dusty", "dull", "poorly labelled"]),
         ("the guide", False, ["knowledgeable", "enthusiastic", "engaging"],
          ["monotonous", "rude", "dismissive"]),
         ("the café", False, ["charming", "delightful"], ["overpriced", "grubby"]),
         ("the galleries", True, ["airy", "uncrowded"], ["gloomy", "overcrowded", "stuffy"]),
         ("the audio tour", False, ["informative", "insightful"], ["patronising", "confusing"])],
        {POS: ["magnificent", "inspiring", "enchanting"], NEG: ["dreary", "underwhelming", "tiresome"]},
        ["the museum down the road", "most galleries in the capital", "the art museum we visited last spring"],
        np="museum", done="visited", gerund="visiting", try_verb="visit",
        worth="worth the entrance fee", event=True,
    ),
    Domain(
        "bicycle", False,
        [("this bicycle", False), ("the folding bike", False), ("this electric bike", False)],
        [("the gears", True, ["smooth", "precise", "responsive"], ["clunky", "stiff", "unreliable"]),
         ("the brakes", True, ["powerful", "dependable"], ["spongy", "squeaky", "weak"]),
         ("the saddle", False, ["comfortable", "supportive"], ["painful", "unforgiving"]),
         ("the frame", False, ["sturdy", "lightweight", "robust"], ["heavy", "wobbly", "flimsy"]),
         ("the tyres", True, ["grippy", "durable"], ["flimsy", "slippery"]),
         ("the lights", True, ["bright", "dependable"], ["dim", "useless"])],
        {POS: ["superb", "fantastic", "delightful"], NEG: ["shoddy", "wretched", "dreadful"]},
        ["my old mountain bike", "bikes twice the price", "the hire bikes in the city"],
        np="bike", done="ridden", gerund="buying", try_verb="buy",
        worth="worth the asking price", event=False,
    ),
    Domain(
        "plumber", True,
        [("this plumber", False), ("the plumbing company", False), ("the emergency plumber", False)],
        [("the quote", False, ["honest", "transparent", "fair"], ["vague", "inflated", "misleading"]),
         ("the repair", False, ["flawless", "thorough", "neat"], ["botched", "shoddy", "sloppy"]),
         ("the engineer", False, ["punctual", "courteous", "tidy"], ["late", "sloppy", "careless"]),
         ("the invoice", False, ["reasonable", "clear"], ["extortionate", "baffling"]),
         ("the office staff", True, ["cheerful", "organised"], ["disorganised", "unhelpful"])],
        {POS: ["excellent", "first-rate", "dependable"], NEG: ["hopeless", "unreliable", "incompetent"]},
        ["the last plumber we used", "the big national firms", "other local tradespeople"],
        np="plumber", done="hired", gerund="hiring", try_verb="call",
        worth="worth the call-out fee", event=True,
    ),
    Domain(
        "board game", False,
        [("this board game", False), ("the new strategy game", False), ("this party game", False)],
        [("the rules", True, ["elegant", "straightforward", "clear"], ["baffling", "convoluted", "unclear"]),
         ("the artwork", False, ["gorgeous", "charming", "striking"], ["garish", "bland", "ugly"]),
         ("the game pieces", True, ["chunky", "sturdy", "beautiful"], ["flimsy", "fiddly", "cheap"]),
         ("the turns", True, ["snappy", "quick"], ["plodding", "drawn-out"]),
         ("the rulebook", False, ["clear", "well organised"], ["confusing", "badly written"]),
         ("the theme", False, ["immersive", "imaginative"], ["tired", "generic"])],
        {POS: ["addictive", "delightful", "ingenious"], NEG: ["tedious", "joyless", "frustrating"]},
        ["the games we usually play", "most family games", "the original edition"],
        np="board game", done="played", gerund="buying", try_verb="try",
        worth="worth the price", event=True,
    ),
    Domain(
        "concert", True,
        [("this concert", False), ("the open-air concert", False), ("last night's gig", False)],
        [("the band", False, ["electrifying", "tight", "energetic"], ["sloppy", "lifeless", "out of tune"]),
         ("the sound mix", False, ["crisp", "balanced"], ["muddy", "distorted", "deafening"]),
         ("the support act", False, ["charming", "talented"], ["forgettable", "tedious"]),
         ("the venue", False, ["intimate", "atmospheric"], ["cramped", "sweltering"]),
         ("the crowd", False, ["joyful", "friendly"], ["rowdy", "obnoxious"]),
         ("the setlist", False, ["generous", "perfect"], ["short", "uninspired"])],
        {POS: ["unforgettable", "magical", "electrifying"], NEG: ["forgettable", "dismal", "underwhelming"]},
        ["last year's festival", "most gigs I have been to", "their previous tour"],
        np="concert", done="attended", gerund="attending", try_verb=None,
        worth="worth the ticket price", event=True,
    ),
]

HELDOUT_INTENSIFIERS = {POS: ["wonderfully", "exceptionally", "remarkably"],
                        NEG: ["dreadfully", "horribly", "ridiculously"]}
HELDOUT_TAILS = {POS: ["which is what counts", "so I was happy overall"],
                 NEG: ["which spoiled it for me", "so I was disappointed overall"]}
HELDOUT_PEOPLE = [("My neighbour", "she"), ("My cousin", "he"), ("My grandfather", "he"),
                  ("My flatmate", "she"), ("A colleague of mine", "she")]


# ---------------------------------------------------------------------------
# Hand-written sentences
# ---------------------------------------------------------------------------

TRAIN_HANDWRITTEN = {
    POS: [
        "Best pizza in town.",
        "Absolutely loved it.",
        "Far better than I expected.",
        "No complaints whatsoever.",
        "Not bad at all for the price.",
        "A gem of a restaurant.",
        "Great food, friendly people, fair prices.",
        "Delicious from the first bite to the last.",
        "The soundtrack still gives me chills.",
        "Loved every single chapter!",
        "What a fantastic evening!",
        "Such a cosy little hotel!",
        "Five minutes in, I was hooked.",
        "I didn't want the book to end.",
        "I couldn't be happier with my new phone.",
        "The plot never stops surprising you.",
        "The story doesn't waste a single page.",
        "The tiramisu alone is worth the trip.",
        "Excellent service from the moment we walked in.",
        "Beautifully written and impossible to forget.",
        "Nothing about this meal disappointed us.",
        "The waiter remembered our order from last time, which was a lovely touch.",
        "I was not expecting much, but this film completely won me over.",
        "The screen is bright enough to read in direct sunlight, and the battery easily lasts two days.",
        "Our room had a balcony overlooking the harbour and the sunsets were unforgettable.",
        "I finished the novel in one sitting because I simply could not put it down.",
        "This app makes splitting bills with my flatmates effortless.",
        "The courier arrived early and even carried the boxes upstairs for me.",
        "The staff went out of their way to help my elderly father.",
        "I never expected a budget phone to feel this premium.",
        "There wasn't a single dull moment in the whole film.",
        "The curry was fragrant, the naan was fluffy, and the service was quick.",
        "My kids have watched it three times already and still laugh at every joke.",
        "Honestly the most comfortable hotel bed I have ever slept in.",
        "I've recommended this book to everyone I know.",
        "The update fixed every crash I had been having, and the app feels faster than ever.",
        "She was nervous about the haircut, but the stylist did a wonderful job.",
        "Customer support sorted out my refund within an hour.",
        "A warm, funny and surprisingly moving story about two brothers.",
        "The phone survived a drop onto concrete without a scratch.",
        "Check-in took two minutes and they upgraded us to a suite.",
        "This is the first budgeting app that has actually stuck with me.",
        "The chef came out to ask how we liked the food, and everything was superb.",
        "Even my grumpy teenager enjoyed this film.",
        "Fast delivery, well packed, exactly as described.",
        "The acting is so natural that you forget you are watching actors.",
        "Clean rooms, a generous breakfast and a view of the sea: what more could you want?",
        "The author explains complicated ideas in plain, friendly language.",
        "I have used this app every day for a year and it has never crashed once.",
        "We booked again before we had even checked out.",
        "The camera takes stunning photos even at night.",
        "Our waitress was cheerful, quick and never let our glasses run dry.",
        "The hotel spa was the most relaxing part of our whole holiday.",
        "The app is simple enough for my grandmother to use.",
        "Everything arrived on time and in perfect condition.",
        "Although the cinema was half empty, the film itself was a delight.",
        "The menu is small, but every dish on it is excellent.",
        "The phone is a little heavy, but the battery life more than makes up for it.",
        "The lobby looked a bit dated, but our room was spotless, quiet and very comfortable.",
        "It starts slowly, but the last hundred pages are breathtaking.",
        "Although the app asks for a lot of permissions, it does exactly what it promises and does it well.",
        "The queue was long, but the burgers were worth the wait.",
        "I was sceptical at first, yet the phone has proved reliable in every way.",
        "Who knew a sequel could be better than the original?",
        "Why didn't I download this app sooner?",
        "My husband is a fussy eater, and even he cleaned his plate.",
        "The critics were right: this is the best thriller of the year.",
        "He says it is the best phone he has ever owned.",
        "They treated us like family from the moment we arrived.",
        "The pasta was homemade, and you could taste the difference.",
        "The characters feel like old friends by the end.",
        "Setting up the phone took less than ten minutes.",
        "I never had to wait more than a minute for anything.",
        "The room was not huge, but it was spotless and beautifully decorated.",
        "I can't remember the last time a film made me laugh this much.",
        "This app doesn't nag, doesn't crash and doesn't drain the battery.",
        "I have no regrets about paying extra for the sea view.",
        "The battery never runs out before bedtime, even with heavy use.",
        "You won't find a friendlier hotel in the whole city.",
        "It isn't flashy, but the food is honest, fresh and delicious.",
        "A clever, funny and beautifully shot film that I will happily watch again and again.",
        "The driver waited patiently while I found my keys and was friendly throughout.",
        "The receptionist booked us a taxi and recommended a wonderful little restaurant nearby.",
        "I was worried the app would be complicated, but I had it working in minutes.",
        "The hotel was in a quiet street only five minutes from the old town, which made it "
        "perfect for exploring on foot.",
        "After three disappointing phones in a row, I finally have one that is fast, reliable, "
        "takes lovely photos and lasts all day on a single charge.",
        "We went for a quick lunch and ended up staying all afternoon because the food, the wine "
        "and the company of the staff were all so good.",
        "By the final chapter I was in tears, and I mean that in the best possible way.",
        "This is a film I will be thinking about for a very long time, and I cannot wait to see "
        "what the director does next.",
    ],
    NEG: [
        "Total waste of money.",
        "Never going back.",
        "Avoid this place.",
        "Cold food, rude staff.",
        "Terrible, just terrible.",
        "Very disappointing meal.",
        "Really bad service.",
        "Would not recommend.",
        "Not worth the hype.",
        "Don't waste your time.",
        "Tiny portions, huge prices.",
        "What a letdown!",
        "What a waste of an evening!",
        "Overpriced, underwhelming and noisy.",
        "Boring, predictable and far too long.",
        "Slow, buggy and full of adverts.",
        "The screen is gorgeous but the battery dies by noon.",
        "I would never buy this again.",
        "The staff were not helpful.",
        "The chicken was raw in the middle.",
        "I gave up on the book after fifty pages.",
        "I did not enjoy a single minute of it.",
        "Nothing on the menu tasted fresh.",
        "I never received the refund they promised.",
        "I wouldn't eat there again if you paid me.",
        "We waited forty minutes for our starters and they arrived cold.",
        "The film is two and a half hours long and feels even longer.",
        "My phone started overheating a week after I bought it.",
        "The sheets had stains on them and nobody at reception seemed to care.",
        "The app logs me out every single time I close it.",
        "The parcel arrived soaked and the box was falling apart.",
        "I have never been so bored in a cinema.",
        "The charger stopped working after a month.",
        "Our room smelled of smoke even though it was supposedly non-smoking.",
        "The twist was obvious from the first scene.",
        "The latest update deleted all of my saved notes.",
        "Customer service kept me on hold for an hour and then hung up.",
        "The waiter rolled his eyes when we asked for the bill.",
        "It looks lovely in the photos, but the reality was grim and dirty.",
        "The first half is charming, but the second half falls completely flat.",
        "The camera is decent, but the phone freezes several times a day.",
        "The breakfast was fine, but the room was freezing and the shower barely worked.",
        "Although the cover is beautiful, the story inside is dull and clumsy.",
        "Although the app looks slick, it crashes whenever I try to pay.",
        "The setting is lovely, though the food was so bad that we left before dessert.",
        "The actors try hard, but the script gives them nothing to work with.",
        "The hotel has a great location, but I would not stay there again.",
        "Why does this phone cost so much when it can barely make a call?",
        "My wife fell asleep halfway through, and honestly I nearly did too.",
        "He returned the phone the day after he bought it.",
        "They charged us for a minibar we never touched.",
        "The book is not nearly as clever as it thinks it is.",
        "The food wasn't terrible, but it certainly wasn't worth forty pounds a head.",
        "The app isn't intuitive and the help pages are useless.",
        "The delivery never arrived, and nobody ever answered my emails.",
        "I cannot recommend this phone, no matter how cheap it gets.",
        "There is no chemistry at all between the two leads.",
        "The phone never holds a signal inside my own house.",
        "Nobody at the front desk knew how to fix the heating.",
        "The characters never feel like real people.",
        "The sequel is far worse than the original in every respect.",
        "The bathroom was mouldy and the towels were grey.",
        "The app constantly asks me to upgrade to the paid version, which ruins the whole experience.",
        "We ordered three dishes and two of them were wrong.",
        "The lift was broken and our room was on the ninth floor.",
        "My order was cancelled twice without any explanation.",
        "Half the features only work if you pay for a subscription.",
        "The dialogue made me cringe all the way through.",
        "The steak was fine, but the rest of the meal was a mess.",
        "I expected much more from such a famous author.",
        "She regretted booking the hotel the minute she saw the room.",
        "The narrator's voice is so irritating that I could not finish the audiobook.",
        "It was the worst haircut I have ever had.",
        "The courier left my parcel on the doorstep in the rain.",
        "Although the waiters were friendly, the kitchen got every single order wrong.",
        "The room was not cleaned once during our four-night stay.",
        "Nothing works the way the advert claims.",
        "The ending ruined what could have been a decent film.",
        "The features sound great on paper, but in practice the phone is slow and awkward.",
        "Our table wasn't ready, even though we had booked weeks in advance.",
        "The plot holes are big enough to drive a bus through.",
        "The hotel pool was closed for the entire week of our stay, and no one mentioned it when we booked.",
        "I struggled through four hundred pages waiting for something, anything, to happen, "
        "and nothing ever did.",
        "I bought this phone because of the glowing reviews, but within a month the screen had "
        "cracked on its own, the speaker had stopped working and support refused to help.",
        "The restaurant was so loud that we had to shout across the table, and the food, when it "
        "finally came, was lukewarm and tasteless.",
        "The film looks expensive, but every scene drags on for far too long and none of the "
        "characters are worth caring about.",
    ],
}

HELDOUT_HANDWRITTEN = {
    POS: [
        "An absolute triumph.",
        "Thoroughly enjoyable outing.",
        "Gorgeous, crisp sound.",
        "The sculptures are magnificent.",
        "Tremendous value for money.",
        "The pianist was sublime.",
        "A cracking game for rainy afternoons.",
        "The dentist explained every step, so I was never nervous.",
        "My headphones block out the entire train carriage, and the music sounds richer than ever.",
        "The tent went up in five minutes and kept us bone dry through a thunderstorm.",
        "I didn't think a museum could hold my nephews' attention for three hours, but this one did.",
        "The plumber turned up within an hour on a Sunday and fixed the leak for a very fair price.",
        "Our family now plays this game every Friday night.",
        "The yoga instructor adapts every pose for beginners, which makes the class feel welcoming.",
        "The bike shop adjusted my gears for free while I waited.",
        "That was the best gig I have been to in years.",
        "The kettle boils in under a minute and switches off silently.",
        "The gardener transformed our overgrown yard into something we're proud of.",
        "The trains ran on time and the seats were roomy.",
        "What a glorious afternoon at the botanical gardens!",
        "The climbing wall staff made a nervous beginner feel completely at ease.",
        "I wasn't expecting a free workshop to be this inspiring.",
        "The orchestra played with such passion that the whole hall stood up at the end.",
        "The pottery class was relaxing, sociable and great fun.",
        "This vacuum cleaner picks up dog hair like nothing else.",
        "The earbuds fit snugly and never fall out, even when I'm jogging.",
        "The curator's talk was witty and surprisingly moving.",
        "The assembly instructions were crystal clear and every screw was included.",
        "The locksmith arrived quickly, stayed calm and charged exactly what he quoted.",
        "The trail was well signposted and the views over the valley were spectacular.",
        "The lifeguards at the lido were attentive and kind to the children.",
        "Although the ferry was delayed, the crew kept everyone informed and handed out free tea.",
        "The wetsuit is a little tight around the shoulders, but it keeps me toasty in cold water.",
        "The rucksack has survived three years of commuting without a single torn seam.",
        "Why has nobody told me about this bakery before?",
        "The electrician didn't leave a speck of dust behind.",
        "The new swimming pool is warm, uncrowded in the mornings and surprisingly cheap.",
        "I would gladly hire this decorator again.",
        "Every puzzle in the escape room was clever and fair.",
        "The walking tour guide knew a fascinating story about almost every building we passed.",
        "The library's new reading room is bright, silent and wonderfully peaceful.",
        "The blender crushes ice effortlessly and cleans up in seconds.",
        "The mechanic found the fault quickly and did not try to sell me anything I didn't need.",
        "The lamp gives a soft, warm light that makes the whole room feel cosy.",
        "We arrived at the campsite late at night in pouring rain, and the owner still came out "
        "with a torch to help us pitch the tent and find the showers.",
        "After years of wobbly second-hand bicycles, riding this one feels like gliding, and the "
        "hydraulic brakes stop me instantly even on wet hills.",
        "The choir sang with such warmth and precision that several people around me were wiping "
        "away tears by the final piece, and I was one of them.",
        "The dentist spotted a problem my previous practice had missed for years, fixed it "
        "painlessly, and even followed up with a phone call the next day.",
    ],
    NEG: [
        "Utterly joyless afternoon.",
        "Shoddy, overpriced junk.",
        "The lamp flickers constantly.",
        "The library's wifi never works.",
        "The filling fell out within a month.",
        "The earbuds lost their charge after barely an hour.",
        "The museum closed half its rooms without warning, and nobody offered us a refund.",
        "The plumber left muddy footprints across the carpet and the tap still drips.",
        "Two of the game cards were missing from a brand-new box.",
        "The drummer seemed to be playing a different song from everyone else.",
        "The bike chain snapped on my second ride.",
        "The dentist's receptionist was curt and kept me waiting for over an hour.",
        "The tent leaked at every seam during the first light drizzle.",
        "I could barely hear the soloist over the chatter of the crowd.",
        "The gym's showers are always cold and the lockers don't lock.",
        "The kettle started leaking from the base after two weeks.",
        "The ferry was filthy, late and absurdly expensive.",
        "The yoga teacher spent the whole session on her phone.",
        "The exhibition felt rushed, and half the captions contained spelling mistakes.",
        "The electrician never returned to finish the job.",
        "Nobody at the bike shop could tell me when my repair would be ready.",
        "The headphones pinch so hard that I get a headache within twenty minutes.",
        "Although the poster promised a full orchestra, only a handful of musicians turned up.",
        "The game looks stunning on the shelf, but playing it is a slog.",
        "The assembly instructions were written in baffling, broken sentences.",
        "The locksmith quoted sixty pounds and then charged us two hundred.",
        "The vacuum cleaner is so loud that the dog hides whenever I switch it on.",
        "The trail signs were missing, and we spent two hours walking in circles.",
        "The pottery class was chaotic, overcrowded and poorly organised.",
        "The mattress sags in the middle and squeaks whenever I turn over.",
        "I doubt I will ever visit that aquarium again.",
        "The audio guide kept freezing, so we learned nothing about the paintings.",
        "Even the interval drinks were warm and flat.",
        "The wetsuit ripped at the knee the very first time I wore it.",
        "The blender rattles violently and leaks around the lid.",
        "The decorator painted over the light switches and didn't bother to clean up.",
        "What a dreary, pointless exhibition.",
        "The swimming pool was freezing and the changing rooms were grimy.",
        "The rucksack's zip broke after a week, and the company ignored my complaint.",
        "Don't bother with this escape room; half the puzzles simply don't work.",
        "The walking tour guide read everything from a script and couldn't answer a single question.",
        "The ferry crossing was so rough and the cabin so grubby that I felt ill the whole way.",
        "We paid extra for front-row seats, yet the stage lighting was so harsh that we spent most "
        "of the concert squinting, and the sound from the speakers was painfully distorted.",
        "The bicycle arrived with a bent wheel, a missing pedal and scratches all along the frame, "
        "and the seller took three weeks to reply to my messages.",
        "The escape room looked exciting online, but the props were broken, the clues made no "
        "sense and the host seemed annoyed that we had turned up at all.",
        "The mechanic kept my car for a week, charged me a fortune and the warning light came "
        "back on before I even got home.",
    ],
}


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
