"""The Python API mirrors the CLI: paths or objects in, the same AuditReport out."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import auditor
from auditor.analyses import ALL_ANALYSES


def test_paths_in_gives_the_same_report_as_run_audit(tiny_bert_dir: Path, text_csv: Path) -> None:
    by_api = auditor.audit(tiny_bert_dir, text_csv, seed=2)
    config = auditor.AuditConfig.model_validate(
        {"model": {"path": str(tiny_bert_dir)}, "data": {"path": str(text_csv)}, "seed": 2})
    by_config = auditor.run_audit(config)
    assert by_api.metrics == by_config.metrics
    assert [m.name for m in by_api.modules] == [m.name for m in by_config.modules]
    assert by_api.metadata.class_names == ["negative", "positive"]


def test_task_embedding_skips_performance_even_for_a_classifier(tiny_bert_dir: Path, text_csv: Path) -> None:
    report = auditor.audit(tiny_bert_dir, text_csv, task="embedding")
    assert report.metadata.task == "embedding"
    assert report.section("performance").metrics == {}
    assert "task='classification'" in report.section("performance").summary
    assert [f.id for f in report.findings if f.id.startswith("performance.")] == ["performance.labels_unused"]


def test_in_memory_text_model_with_its_tokenizer(tiny_bert_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_bert_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    data = {"text": ["a great film", "an awful film", "i loved it", "i hated it"],
            "label": ["positive", "negative", "positive", "negative"]}
    report = auditor.audit(model, data, tokenizer=tokenizer, batch_size=2)
    assert report.metadata.modality == "text" and report.metadata.n_samples == 4
    assert report.section("performance").tables[0].rows[0][0] == "negative"


def test_unknown_analysis_and_bad_option_are_config_errors() -> None:
    model = nn.Linear(3, 2)
    data = (torch.randn(8, 3), torch.arange(8) % 2)
    with pytest.raises(auditor.ConfigError, match="nope"):
        auditor.audit(model, data, analyses=["inventory", "nope"])
    with pytest.raises(auditor.ConfigError, match="batch_size"):
        auditor.audit(model, data, batch_size=0)
    only = auditor.audit(model, data, analyses=["performance"])
    assert [s.id for s in only.sections] == ["performance"]
    assert only.not_run == {a.id: "skipped by the configuration" for a in ALL_ANALYSES if a.id != "performance"}
    skipped = auditor.audit(model, data, skip=[a.id for a in ALL_ANALYSES if a.id != "inventory"])
    assert [s.id for s in skipped.sections] == ["inventory"]


def test_non_finite_arrays_are_refused_before_the_audit() -> None:
    x = torch.randn(20, 3)
    x[5, 1] = float("inf")
    with pytest.raises(auditor.DataError, match=r"0 NaN and 1 Inf values in 1 of 20 samples, the first at sample 5"):
        auditor.audit(nn.Linear(3, 2), (x, torch.arange(20) % 2))
