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

Run ``python -m auditor.demo.sentiment_data`` to
rewrite both CSV files; re-running reproduces them byte for byte.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

from auditor.demo.sentiment_data.families import HELDOUT_FAMILIES, TRAIN_FAMILIES
from auditor.demo.sentiment_data.grammar import (
    HELDOUT_HANDWRITTEN, HELDOUT_DOMAINS, HELDOUT_PATH, HELDOUT_SEED, HELDOUT_SIZE, LABELS, TRAIN_DOMAINS,
    TRAIN_HANDWRITTEN, TRAIN_PATH, TRAIN_SEED, TRAIN_SIZE, Domain, Family, Row, WordsByLabel,
)


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
