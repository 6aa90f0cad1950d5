"""The modality seam: `subject.inputs` gives the attributed input, its baseline, the positions a reader sees and
what a deleted position becomes, for text (a tiny tokenizer), images and arrays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from auditor.config import AuditConfig
from auditor.pipeline import _in_memory_data, _wrap_module
from auditor.subject import Subject, build_subject
from auditor.subject.inputs import ArrayInputs, ImageInputs, TextInputs
from tests.conftest import SPECIAL_TOKENS, WORDS
from tests.models import Bag


def _subject(model: nn.Module, data: Any, tokenizer: Any = None) -> Subject:
    return build_subject(_wrap_module(model, tokenizer), _in_memory_data(data, max_samples=1000, seed=0),
                         AuditConfig(batch_size=4))


@pytest.fixture()
def text(tmp_path: Path) -> tuple[Subject, Any]:
    from transformers import BertTokenizerFast

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join([*SPECIAL_TOKENS, *WORDS]) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab=str(vocab))
    model = Bag(len(SPECIAL_TOKENS) + len(WORDS)).eval()
    data = {"text": ["good film", "bad", "the film was good."], "label": [1, 0, 1]}
    return _subject(model, data, tokenizer), tokenizer


def _at(subject: Subject, *texts: str) -> list[int]:
    """The sample indices of `texts` (an audit orders texts shortest first)."""
    assert subject.data.texts is not None
    return [subject.data.texts.index(t) for t in texts]


def test_text_inputs_attribute_token_ids_from_a_pad_baseline_that_keeps_the_markers(text: tuple[Subject, Any]) -> None:
    subject, tok = text
    inputs = subject.inputs
    assert isinstance(inputs, TextInputs) and inputs.is_text and inputs.key == "input_ids"
    batch = subject.encode_samples(_at(subject, "good film", "bad"))
    cls, sep, pad = tok.cls_token_id, tok.sep_token_id, tok.pad_token_id
    good, film, bad = tok.convert_tokens_to_ids(["good", "film", "bad"])
    assert batch["input_ids"].tolist() == [[cls, good, film, sep], [cls, bad, sep, pad]]
    assert inputs.baseline(batch["input_ids"]).tolist() == [[cls, pad, pad, sep], [cls, pad, sep, pad]]
    base = inputs.baseline_inputs(batch)
    assert torch.equal(base["attention_mask"], batch["attention_mask"])
    assert base["input_ids"].tolist() == [[cls, pad, pad, sep], [cls, pad, sep, pad]]


def test_text_positions_are_the_attended_tokens_without_markers_and_deletion_pads_them(
        text: tuple[Subject, Any]) -> None:
    subject, tok = text
    inputs = subject.inputs
    batch = subject.encode_samples(_at(subject, "good film", "bad"))
    assert [p.tolist() for p in inputs.positions(batch)] == [[1, 2], [1]]
    one = inputs.sample(batch, 1)  # "bad" as it was encoded alone: the batch's padding trimmed
    assert one["input_ids"].tolist() == [[tok.cls_token_id, tok.convert_tokens_to_ids("bad"), tok.sep_token_id]]
    where = inputs.positions(batch)[0]
    delete = inputs.deletion(inputs.sample(batch, 0), where, inputs.baseline)
    rows = delete(torch.tensor([[True, False], [False, True], [False, False]]))
    good, film = tok.convert_tokens_to_ids(["good", "film"])
    cls, sep, pad = tok.cls_token_id, tok.sep_token_id, tok.pad_token_id
    assert rows["input_ids"].tolist() == [[cls, pad, film, sep], [cls, good, pad, sep], [cls, good, film, sep]]
    assert rows["attention_mask"].tolist() == [[1, 1, 1, 1]] * 3  # a deleted token is still read, as a pad
    # one value per token: the hidden units summed, the padding zeroed
    attribution = torch.ones(2, 4, 3)
    assert inputs.per_position(attribution, batch).tolist() == [[3, 3, 3, 3], [3, 3, 3, 0]]


def test_text_display_merges_pieces_written_together_into_one_word(text: tuple[Subject, Any]) -> None:
    subject, tok = text
    inputs = subject.inputs
    assert isinstance(inputs, TextInputs)
    words, positions, special = inputs.words("the film was good.")
    assert words == ["the", "film", "was", "good."]  # "good" and "." are two tokens, one word for a reader
    assert positions == [[1], [2], [3], [4, 5]] and special == [0, 6]
    ids = subject.encode_samples(_at(subject, "good film"))
    assert inputs.tokens(ids["input_ids"][0].tolist()) == ["[CLS]", "good", "film", "[SEP]"]
    assert inputs.not_special(ids).tolist() == [False, True, True, False]
    assert inputs.offsets("good film") == [(0, 0), (0, 4), (5, 9), (0, 0)]


def test_image_inputs_delete_pixels_to_the_baseline_on_every_channel() -> None:
    x = torch.arange(2 * 2 * 3 * 3, dtype=torch.float32).reshape(2, 2, 3, 3)
    model = nn.Sequential(nn.Conv2d(2, 2, 3), nn.Flatten(), nn.Linear(2, 2)).eval()
    subject = _subject(model, (x, [0, 1]))
    inputs = subject.inputs
    assert isinstance(inputs, ImageInputs) and not inputs.is_text and inputs.key == "x" and inputs.spatial
    batch = subject.encode_samples([0, 1])
    assert torch.equal(inputs.baseline(batch["x"]), torch.zeros_like(x))
    assert torch.equal(inputs.baseline(batch["x"], "mean"), x.mean(dim=0).expand_as(x))  # the data mean
    assert [p.tolist() for p in inputs.positions(batch)] == [list(range(9))] * 2  # a pixel, channels together
    one = inputs.sample(batch, 1)
    masks = torch.zeros(2, 9, dtype=torch.bool)
    masks[0, 4] = True  # the centre pixel
    rows = inputs.deletion(one, torch.arange(9), lambda t: torch.full_like(t, -1.0))(masks)["x"]
    assert rows.shape == (2, 2, 3, 3)
    assert rows[0, :, 1, 1].tolist() == [-1.0, -1.0]
    kept = torch.ones(2, 3, 3, dtype=torch.bool)
    kept[:, 1, 1] = False
    assert torch.equal(rows[0][kept], x[1][kept]) and torch.equal(rows[1], x[1])
    assert inputs.per_position(torch.ones(2, 2, 3, 3), batch).tolist() == [[[2.0] * 3] * 3] * 2
    picture = inputs.display(x[0, :1])
    assert picture.shape == (3, 3) and picture.min() == 0.0 and picture.max() == 1.0


def test_array_inputs_are_one_position_per_feature() -> None:
    x = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32)
    subject = _subject(nn.Linear(3, 2).eval(), (x, [0, 1]))
    inputs = subject.inputs
    assert isinstance(inputs, ArrayInputs) and not inputs.spatial and inputs.key == "x"
    batch = subject.encode_samples([0, 1])
    assert [p.tolist() for p in inputs.positions(batch)] == [[0, 1, 2], [0, 1, 2]]
    rows = inputs.deletion(inputs.sample(batch, 0), torch.arange(3), torch.zeros_like)(
        torch.tensor([[True, False, True]]))
    assert rows["x"].tolist() == [[0.0, 2.0, 0.0]]
    assert inputs.baseline(batch["x"], "mean").tolist() == [[2.5, 3.5, 4.5]] * 2
