"""Next-token metrics against the model's own logits, computed here independently."""

from __future__ import annotations

import math

import pytest
import torch

from tests.lm_models import audit_induction_model, induction_gpt2, repeated_texts, word_tokenizer


def test_loss_perplexity_and_top1_match_a_direct_computation(tmp_path) -> None:  # type: ignore[no-untyped-def]
    report = audit_induction_model(tmp_path, analyses={"only": ["next_token"]})
    model, tokenizer = induction_gpt2(), word_tokenizer()
    inputs = tokenizer(repeated_texts(24, length=10, seed=0), return_tensors="pt")  # equal lengths: no padding
    with torch.no_grad():
        logits = model(**inputs).logits.double()
    targets = inputs["input_ids"][:, 1:]
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1))
    top1 = (logits[:, :-1].argmax(-1) == targets).double().mean()
    metrics = report.metrics
    assert metrics["next_token.loss"] == pytest.approx(float(loss), rel=1e-5)
    assert metrics["next_token.perplexity"] == pytest.approx(math.exp(float(loss)), rel=1e-5)
    assert metrics["next_token.top1_accuracy"] == pytest.approx(float(top1), abs=1e-9)
    assert metrics["next_token.tokens"] == targets.numel()
    section = next(s for s in report.sections if s.id == "next_token")
    by_position = {row[0]: row for row in section.tables[0].rows}
    assert len(by_position) >= 2  # the second half (positions 11-20) is predicted, the first is not
    first, last = section.tables[0].rows[0], section.tables[0].rows[-1]
    assert last[2] < first[2] - 1.0
