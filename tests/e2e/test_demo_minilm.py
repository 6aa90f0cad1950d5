"""`auditor demo --only minilm_sentiment --only minilm_encoder`: the real pretrained MiniLM encoder with the
sentiment head trained here, and the bare encoder whose probes find where sentiment becomes decodable."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.demo_common import assert_main_path_said_once, audit_of, run_demos

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_demos(tmp_path_factory, "minilm_sentiment", "minilm_encoder")


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


def test_the_bare_minilm_encoder_shows_where_sentiment_becomes_linearly_decodable(demo_out: Path) -> None:
    audit = audit_of(demo_out, "minilm_encoder")
    assert audit["metadata"]["task"] == "embedding"
    probes = next(s for s in audit["sections"] if s["id"] == "probes")
    assert probes["error"] is None
    assert [p["property"] for p in probes["details"]["properties"]] == ["label", "sentiment"]
    peaks = {f["evidence"]["property"]: f for f in audit["findings"] if f["id"] == "probes.peak_layer"}
    assert set(peaks) == {"label", "sentiment"}  # both decodable somewhere, above the permutation baseline
    for finding in peaks.values():
        assert finding["module"].startswith("encoder.layer.")  # inside the stack, not the embeddings
        assert finding["evidence"]["accuracy"] > finding["evidence"]["random_init_accuracy"]
    # the frozen encoder of the sentiment demo is this encoder: its blocks give the same probe curve there
    with_head = next(s for s in audit_of(demo_out, "minilm_sentiment")["sections"] if s["id"] == "probes")
    bare = {n.removeprefix("encoder."): m["probe_accuracy/label"] for n, m in probes["module_metrics"].items()}
    full = {n.removeprefix("encoder.encoder.").removeprefix("encoder."): m["probe_accuracy/label"]
            for n, m in with_head["module_metrics"].items() if n != "head"}
    assert bare == pytest.approx(full)


@pytest.mark.parametrize("name", ["minilm_sentiment", "minilm_encoder"])
def test_no_minilm_report_repeats_the_collapse_of_its_main_path(demo_out: Path, name: str) -> None:
    assert_main_path_said_once(audit_of(demo_out, name))
