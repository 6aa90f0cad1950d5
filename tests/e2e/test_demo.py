"""`auditor demo`: both embedded models train (or load from cache), audit, and report honest numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from typer.testing import CliRunner

    from auditor.cli import app

    out = tmp_path_factory.mktemp("demo")
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "held-out accuracy at training" in result.output
    return out


def _audit(out: Path, name: str) -> dict[str, Any]:
    folder = out / name
    assert sorted(p.name for p in folder.iterdir()) == ["audit.json", "report.html", "report.pdf"]
    return json.loads((folder / "audit.json").read_text())


def test_digits_cnn_is_accurate_and_its_weights_reload_exactly(demo_out: Path) -> None:
    audit = _audit(demo_out, "digits_cnn")
    trained = audit["metadata"]["notes"]["heldout_accuracy_at_training"]
    measured = audit["metrics"]["performance.accuracy"]
    assert trained >= 0.95
    # The audit reloads the cached safetensors through the factory: same held-out accuracy to the sample.
    assert measured == pytest.approx(trained, abs=1e-4)
    assert audit["metadata"]["n_samples"] == 360 and audit["metadata"]["n_classes"] == 10
    assert not [f for f in audit["findings"] if f["id"] == "performance.near_chance"]
    features = next(s for s in audit["sections"] if s["id"] == "features")
    assert features["error"] is None and features["seconds"] < 120  # about a minute on 2 cores, with slack
    assert {"features.gallery.features.relu3", "features.maps.features.relu1"} <= {f["id"] for f in features["figures"]}


def test_minilm_sentiment_audits_the_real_encoder_with_its_head(demo_out: Path) -> None:
    audit = _audit(demo_out, "minilm_sentiment")
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


def test_the_degraded_digits_release_fails_its_check_against_the_first(demo_out: Path) -> None:
    from typer.testing import CliRunner

    from auditor.cli import app

    first, second = _audit(demo_out, "digits_cnn"), _audit(demo_out, "digits_cnn_v2")
    assert first["metadata"]["data_fingerprint"] == second["metadata"]["data_fingerprint"]  # same held-out digits
    assert first["metadata"]["weights_sha256"] != second["metadata"]["weights_sha256"]
    verdict = second["policy"]
    assert verdict["passed"] is False and verdict["exit_code"] == 1
    assert verdict["comparison"].startswith("paired on the same 360 samples")
    failed = {r["name"] for r in verdict["results"] if r["status"] == "fail"}
    assert "no class regresses" in failed
    # The gate's result is the headline: the audit's verdict, its banner and the diff's first page.
    assert second["verdict"]["status"] == "fail" and second["verdict"]["decided_by"] == "policy"
    page = (demo_out / "digits_cnn_v2" / "report.html").read_text(encoding="utf-8")
    assert "Release blocked" in page and "Release with care" not in page
    folder = demo_out / "release_diff"
    assert sorted(p.name for p in folder.iterdir()) == ["check.md", "diff.html", "diff.json", "diff.md", "diff.pdf",
                                                        "junit.xml", "policy.toml"]
    diff = json.loads((folder / "diff.json").read_text())
    three = next(c for c in diff["classes"] if c["name"] == "3")
    assert diff["paired"] and three["new"] < three["old"] - 0.3 and three["p_holm"] < 0.05
    assert diff["new"]["verdict"] == "fail" and diff["new"]["gate"] == "failed"
    assert max(m["score"] for m in diff["module_moves"]) <= 2 * diff["modules_shared"] ** 0.5  # no 5e14 spreads
    result = CliRunner().invoke(app, ["check", str(demo_out / "digits_cnn_v2"), "--policy", str(folder / "policy.toml"),
                                      "--baseline", str(demo_out / "digits_cnn")])
    assert result.exit_code == 1, result.output


def test_the_bare_minilm_encoder_shows_where_sentiment_becomes_linearly_decodable(demo_out: Path) -> None:
    audit = _audit(demo_out, "minilm_encoder")
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
    with_head = next(s for s in _audit(demo_out, "minilm_sentiment")["sections"] if s["id"] == "probes")
    bare = {n.removeprefix("encoder."): m["probe_accuracy/label"] for n, m in probes["module_metrics"].items()}
    full = {n.removeprefix("encoder.encoder.").removeprefix("encoder."): m["probe_accuracy/label"]
            for n, m in with_head["module_metrics"].items() if n != "head"}
    assert bare == pytest.approx(full)


def test_the_digits_gan_is_judged_by_its_discriminator_and_by_the_digits_cnn(demo_out: Path) -> None:
    audit = _audit(demo_out, "digits_gan")
    meta = audit["metadata"]
    assert meta["task"] == "generation" and meta["modality"] == "noise" and meta["n_samples"] == 1000
    assert [s["id"] for s in audit["sections"]] == ["inventory", "judge", "weights"]  # weights: the generator's
    judge = audit["sections"][1]
    assert judge["error"] is None and judge["seconds"] < 120
    assert judge["metrics"]["intact_condition_accuracy"] > 0.6  # the CNN sees the digit each sample asked for
    assert {"judge.samples", "judge.drops", "judge.classes"} <= {f["id"] for f in judge["figures"]}
    # every block of the generator has all four judges' numbers; the residual blocks were ablated by their branch
    for block in ("embed", "project", "up", "blocks.0", "blocks.1", "to_image"):
        assert {"judge_realness_drop", "judge_confidence_drop", "judge_class_shift",
                "judge_diversity_change"} <= set(judge["module_metrics"][block])
    assert judge["details"]["branches"]["blocks.0"] == ["blocks.0.conv2"]
    # removing the class embedding scatters the samples over other digits but keeps them varied
    embed = judge["module_metrics"]["embed"]
    assert embed["judge_class_shift"] > 0.3 and embed["judge_diversity_change"] > -0.9
    # a stage outside the residual stack, replaced by its mean, makes every sample the same image, whatever the
    # discriminator thinks of that image: the stages are the generator's main path, one finding for all of them
    (path,) = [f for f in audit["findings"] if f["id"] == "judge.main_path"]
    assert {"project", "up", "to_image"} <= set(path["evidence"]["modules"].split(", "))
    critical = {f["module"] for f in audit["findings"] if f["id"] == "judge.critical_module"}
    assert not critical & set(path["evidence"]["modules"].split(", "))
    assert judge["module_metrics"]["project"]["judge_diversity_change"] == pytest.approx(-1.0, abs=1e-6)


@pytest.mark.parametrize("name", ["digits_cnn", "minilm_sentiment", "minilm_encoder"])
def test_no_demo_report_repeats_the_collapse_of_its_main_path(demo_out: Path, name: str) -> None:
    """Replacing any module on the one path every sample takes collapses the model to one class: one finding
    says so for all of them; a critical_module finding is left only to drops that say something else."""
    audit = _audit(demo_out, name)
    paths = [f for f in audit["findings"] if f["id"] == "ablation.main_path"]
    assert len(paths) <= 1
    collapsing = [f for f in audit["findings"] if f["id"] == "ablation.critical_module"
                  and "for nearly every sample" in f["message"]]
    assert len(collapsing) <= 1
    rows = next(s for s in audit["sections"] if s["id"] == "ablation")["module_metrics"]
    low = "ablation_embedding_change_low" if audit["metadata"]["task"] == "embedding" else "ablation_drop_low"
    for member in (paths[0]["evidence"]["modules"].split(", ") if paths else []):
        assert rows[member][low] > 0  # the table keeps every grouped module's row
