"""`auditor demo --only minilm_encoder`: the bare pretrained MiniLM encoder, audited as an embedding, whose probes
find where sentiment becomes linearly decodable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.demo_common import assert_main_path_said_once, audit_of, run_demos

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_demos(tmp_path_factory, "minilm_encoder")


def _sentiment_probes() -> Any:  # a Section
    from auditor.demo import demo_config
    from auditor.pipeline import run_audit

    config, _ = demo_config("minilm_sentiment")
    report = run_audit(config.with_overrides({"analyses.only": ["probes"]}))
    section = next(s for s in report.sections if s.id == "probes")
    assert section.error is None, section.error
    return section


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
    # the frozen encoder of the sentiment demo is this encoder: its blocks give the same probe curve there (the
    # sentiment demo's configuration, probes only: what its full report holds for them)
    with_head = _sentiment_probes()
    bare = {n.removeprefix("encoder."): m["probe_accuracy/label"] for n, m in probes["module_metrics"].items()}
    full = {n.removeprefix("encoder.encoder.").removeprefix("encoder."): m["probe_accuracy/label"]
            for n, m in with_head.module_metrics.items() if n != "head"}
    assert bare == pytest.approx(full)


def test_the_minilm_encoder_report_says_the_collapse_of_its_main_path_once(demo_out: Path) -> None:
    assert_main_path_said_once(audit_of(demo_out, "minilm_encoder"))
