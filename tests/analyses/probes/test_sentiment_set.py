"""The built-in sentiment probe set: balanced, reproduced byte for byte, with negation and contrast, and
disjoint from the MiniLM demo's training sentences in content words and sentence frames (otherwise the
demo's sentiment probe would be circular)."""

from __future__ import annotations

from collections import Counter

from auditor.demo.sentiment import TRAIN_CSV
from auditor.demo.sentiment import read_rows as read_demo_rows
from auditor.analyses.probes import sentiment_set
from auditor.analyses.probes.sentiment_set import FUNCTION_WORDS, PROBE_PATH, read_rows, skeleton, words


def test_the_shipped_file_is_what_the_generator_writes() -> None:
    assert PROBE_PATH.read_text(encoding="utf-8") == sentiment_set.render_csv(sentiment_set.build_rows())


def test_the_set_is_balanced_distinct_and_holds_negation_and_contrast() -> None:
    rows = read_rows()
    texts = [t for t, _ in rows]
    assert Counter(y for _, y in rows) == {"positive": 160, "negative": 160}
    assert len(set(texts)) == len(texts)
    negation = {"not", "no", "never", "nothing", "nobody", "none", "nor"}
    contrast = {"whereas", "despite", "yet", "although", "though", "but"}
    for label in ("positive", "negative"):  # both polarities, so that a probe cannot read a negation word
        texts_of = [words(t) for t, y in rows if y == label]
        negated = sum(any(w in negation or w.endswith("n't") for w in ws) for ws in texts_of)
        contrasted = sum(any(w in contrast for w in ws) for ws in texts_of)
        assert negated >= 20 and contrasted >= 20, (label, negated, contrasted)


def test_no_content_word_and_no_sentence_frame_is_shared_with_the_demo_training_data() -> None:
    train_texts, _ = read_demo_rows(TRAIN_CSV)
    probe_texts = [t for t, _ in read_rows()]
    content = {w for t in train_texts for w in words(t) if w not in FUNCTION_WORDS}
    shared = sorted({w for t in probe_texts for w in words(t) if w not in FUNCTION_WORDS} & content)
    assert shared == []
    frames = {skeleton(t) for t in train_texts}
    assert [t for t in probe_texts if skeleton(t) in frames] == []
