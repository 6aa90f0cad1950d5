"""Probes of a causal language model's residual stream, on the hand-built induction model (tests/lm_models.py).

Every text is the same six words in another order, twice: the mean of the token embeddings is one vector for all
of them, so no probe reads from the embeddings which word a text ends with. Layer 0's previous-token head writes
each position's previous token into slots of its own; their mean is the bag of words less the last word, so from
layer 0 on the last word is linearly readable, exactly. The audit data's `label` column is that property: a
language model's labels are properties to probe for, not targets."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import numpy as np
import pytest

from auditor.config import AnalysesConfig, AuditConfig, DataSpec, ModelSpec
from auditor.errors import DataError
from auditor.pipeline import run_audit
from tests.lm_models import save_induction_gpt2

WORDS = (2, 3, 5, 7, 11, 13)
GROUP_A = {2, 5, 11}


def _texts(n: int) -> list[tuple[str, str]]:
    """`n` distinct orders of WORDS (a seeded draw), each repeated; the label: the group of the last word."""
    orders = list(itertools.permutations(WORDS))
    picks = np.random.default_rng(0).choice(len(orders), size=n, replace=False)
    rows = []
    for i in sorted(picks.tolist()):
        half = " ".join(f"w{w}" for w in orders[i])
        rows.append((f"{half} {half}", "A" if orders[i][-1] in GROUP_A else "B"))
    return rows


def _write(path: Path, rows: list[tuple[str, ...]], header: tuple[str, ...]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _config(model: Path, data: Path, **data_options: object) -> AuditConfig:
    return AuditConfig(model=ModelSpec(path=str(model)), data=DataSpec(path=str(data), **data_options), batch_size=16,
                       analyses=AnalysesConfig.model_validate({"only": ["probes", "next_token"],
                                                               "probes": {"builtin": False}}))


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    return save_induction_gpt2(tmp_path_factory.mktemp("probes_lm") / "model")


@pytest.fixture(scope="module")
def probed(model: Path, tmp_path_factory):  # type: ignore[no-untyped-def]
    data = _write(tmp_path_factory.mktemp("probes_lm_data") / "texts.csv", _texts(80), ("text", "label"))
    report = run_audit(_config(model, data))
    section = next(s for s in report.sections if s.id == "probes")
    assert section.error is None, section.error
    return report, section


def test_the_last_word_is_read_from_the_layer_that_writes_it_and_not_before(probed) -> None:  # type: ignore[no-untyped-def]
    _, section = probed
    accuracy = section.module_metric("probe_accuracy")
    assert set(accuracy) >= {"transformer.wte", "transformer.h.0", "transformer.h.1", "transformer.ln_f"}
    assert accuracy["transformer.h.0"] >= 0.95 and accuracy["transformer.h.1"] >= 0.95
    # one vector for every text: nothing to read, however the folds fall
    assert accuracy["transformer.wte"] <= section.metrics["majority_rate"] + 0.1
    peak = next(f for f in section.findings if f.id == "probes.peak_layer")
    assert "transformer.wte" not in peak.message.split(":")[0]


def test_a_language_models_labels_are_probed_not_scored(probed) -> None:  # type: ignore[no-untyped-def]
    report, section = probed
    ids = {s.id for s in report.sections}
    assert "performance" not in ids and "next_token" in ids  # the labels are no target
    assert "label (audit data, 2 classes)" in section.summary


def test_a_language_models_data_may_lack_the_label_column_unless_the_config_names_one(model: Path,
                                                                                         tmp_path: Path) -> None:
    data = _write(tmp_path / "plain.csv", [(t,) for t, _ in _texts(12)], ("text",))
    report = run_audit(_config(model, data))
    assert next(s for s in report.sections if s.id == "next_token").error is None
    assert "no labels" in report.not_run["probes"]
    with pytest.raises(DataError, match="no label column 'topic'"):
        run_audit(_config(model, data, label_column="topic"))
