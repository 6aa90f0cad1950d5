"""`auditor demo --only minilm_sentiment`: the real pretrained MiniLM encoder with the sentiment head trained
here (the bare encoder's demo has a file of its own, so parallel workers run the two side by side)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.demo_common import assert_main_path_said_once, audit_of, run_demos

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_demos(tmp_path_factory, "minilm_sentiment")


def test_minilm_sentiment_audits_the_real_encoder_with_its_head(demo_out: Path) -> None:
    audit = audit_of(demo_out, "minilm_sentiment")
    meta = audit["metadata"]
    assert meta["class_names"] == ["negative", "positive"] and meta["modality"] == "text"
    assert len(audit["modules"]) == 122  # BertModel's 120 named modules + the wrapper + the head
    assert audit["modules"][-1]["name"] == "head"
    assert audit["metrics"]["performance.accuracy"] == pytest.approx(meta["notes"]["heldout_accuracy_at_training"],
                                                                  abs=1 / 300 + 1e-9)
    assert audit["metrics"]["performance.accuracy"] > 0.65
    assert meta["weights_sha256"] and meta["n_samples"] == 300
    features = next(s for s in audit["sections"] if s["id"] == "features")
    assert features["error"] is None and features["details"]["text_units"] and features["details"]["attention"]
    assert "features.attention_heads" in {f["id"] for f in features["figures"]}


def test_the_minilm_sentiment_report_says_the_collapse_of_its_main_path_once(demo_out: Path) -> None:
    assert_main_path_said_once(audit_of(demo_out, "minilm_sentiment"))
