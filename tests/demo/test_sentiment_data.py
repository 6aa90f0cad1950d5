"""Checks on the shipped demo sentiment dataset and its generator.

The generator is the package `auditor.demo.sentiment_data` (its grammar, its sentence families and the
assembly); `python -m auditor.demo.sentiment_data` rewrites the CSV files.
"""

import csv
import importlib
import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "auditor" / "demo" / "data"
FILES = {"train": DATA / "sentiment_train.csv", "heldout": DATA / "sentiment_heldout.csv"}
MIN_ROWS = {"train": 600, "heldout": 200}

STOPWORDS = {
    "about", "after", "again", "all", "also", "although", "always", "because", "been",
    "before", "being", "could", "didn't", "doesn't", "don't", "every", "from", "have",
    "having", "their", "there", "these", "they", "this", "those", "though", "through",
    "until", "wasn't", "were", "weren't", "what", "when", "where", "which", "while",
    "would", "wouldn't", "yours",
}


def _load_generator():
    return importlib.import_module("auditor.demo.sentiment_data")


def _read(split):
    with open(FILES[split], newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        assert next(reader) == ["text", "label"]
        return [tuple(row) for row in reader]


def _words(text):
    return re.findall(r"[a-z]+(?:['-][a-z]+)*", text.lower())


def _content_words(text):
    return {w for w in _words(text) if len(w) >= 5 and w not in STOPWORDS}


@pytest.fixture(scope="module")
def rows():
    return {split: _read(split) for split in FILES}


@pytest.mark.parametrize("split", list(FILES))
def test_size_and_labels(rows, split):
    data = rows[split]
    assert len(data) >= MIN_ROWS[split]
    counts = Counter(label for _, label in data)
    assert set(counts) == {"positive", "negative"}
    for label, n in counts.items():
        assert 0.45 <= n / len(data) <= 0.55, (label, n, len(data))


@pytest.mark.parametrize("split", list(FILES))
def test_no_duplicates_within_file(rows, split):
    texts = [text for text, _ in rows[split]]
    dupes = [t for t, n in Counter(texts).items() if n > 1]
    assert not dupes


def test_no_sentence_in_both_files(rows):
    train = {text for text, _ in rows["train"]}
    shared = [text for text, _ in rows["heldout"] if text in train]
    assert not shared


@pytest.mark.parametrize("split", list(FILES))
def test_sentences_are_clean(rows, split):
    for text, _ in rows[split]:
        assert text == text.strip() and "  " not in text
        assert text[0].isupper(), text
        assert text[-1] in ".!?", text


@pytest.mark.parametrize("split", list(FILES))
def test_lengths_vary(rows, split):
    lengths = [len(text.split()) for text, _ in rows[split]]
    assert min(lengths) <= 3
    assert max(lengths) >= 25
    assert len(set(lengths)) >= 10


@pytest.mark.parametrize("split", list(FILES))
def test_negation_in_both_labels(rows, split):
    negation = re.compile(r"\b(not|never|no|nothing|nobody)\b|n't\b", re.IGNORECASE)
    labels = Counter(label for text, label in rows[split] if negation.search(text))
    assert labels["positive"] >= 10 and labels["negative"] >= 10, labels


@pytest.mark.parametrize("split", list(FILES))
def test_contrast_in_both_labels(rows, split):
    contrast = re.compile(r"\b(but|although|though|however|yet)\b", re.IGNORECASE)
    labels = Counter(label for text, label in rows[split] if contrast.search(text))
    assert labels["positive"] >= 10 and labels["negative"] >= 10, labels


@pytest.mark.parametrize("split", list(FILES))
def test_questions_and_exclamations(rows, split):
    assert any(text.endswith("?") for text, _ in rows[split])
    assert any(text.endswith("!") for text, _ in rows[split])


def test_heldout_vocabulary_goes_beyond_train(rows):
    train_vocab = set()
    for text, _ in rows["train"]:
        train_vocab |= _content_words(text)
    novel = [text for text, _ in rows["heldout"] if _content_words(text) - train_vocab]
    assert len(novel) / len(rows["heldout"]) >= 0.30


def test_generator_reproduces_committed_files():
    gen = _load_generator()
    train, heldout = gen.build_rows()
    for split, generated in (("train", train), ("heldout", heldout)):
        assert FILES[split].read_bytes() == gen.render_csv(generated).encode("utf-8"), split
    assert gen.build_rows() == (train, heldout)  # deterministic across calls
