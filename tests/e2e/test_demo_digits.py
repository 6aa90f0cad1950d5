"""`auditor demo --only digits_cnn --only digits_cnn_v2 --only digits_gan`: the digits CNN, its degraded second
release judged against it, and the digits GAN judged by its discriminator and the CNN."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.demo_common import assert_main_path_said_once, audit_of, run_demos

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_demos(tmp_path_factory, "digits_cnn", "digits_cnn_v2", "digits_gan")


def test_digits_cnn_is_accurate_and_its_weights_reload_exactly(demo_out: Path) -> None:
    audit = audit_of(demo_out, "digits_cnn")
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


def test_the_degraded_digits_release_fails_its_check_against_the_first(demo_out: Path) -> None:
    from typer.testing import CliRunner

    from auditor.cli import app

    first, second = audit_of(demo_out, "digits_cnn"), audit_of(demo_out, "digits_cnn_v2")
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


def test_the_digits_gan_is_judged_by_its_discriminator_and_by_the_digits_cnn(demo_out: Path) -> None:
    audit = audit_of(demo_out, "digits_gan")
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


def test_the_digits_report_says_the_collapse_of_its_main_path_once(demo_out: Path) -> None:
    assert_main_path_said_once(audit_of(demo_out, "digits_cnn"))
