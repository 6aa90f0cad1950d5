"""The judge analysis: generators whose every answer is known by construction (`tests.models`), judged by a
discriminator that calls a template real and a classifier that names the nearest template."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import auditor
from auditor.report.io import save_report
from tests.models import (
    build_painter_generator,
    build_template_classifier,
    build_template_discriminator,
    build_toy_generator,
)

REPO = Path(__file__).resolve().parents[3]


def _judge(generator: torch.nn.Module, *, classifier: bool = True, **options: object) -> auditor.Section:
    report = auditor.audit_generator(generator, build_template_discriminator(),
                                     build_template_classifier() if classifier else None, max_samples=240,
                                     batch_size=64, **options)
    section = report.section("judge")
    assert section.error is None, section.error
    return section


def _modules(section: auditor.Section, finding: str) -> set[str]:
    return {f.module for f in section.findings if f.id == finding and f.module}


def test_ablating_an_identity_block_moves_no_judge() -> None:
    section = _judge(build_toy_generator())
    # blocks.1 is x + branch(x) with a zero-weight branch: removing it is removing nothing
    moved = section.module_metrics["blocks.1"]
    assert moved["judge_realness_drop"] == 0 and moved["judge_confidence_drop"] == 0
    assert moved["judge_class_shift"] == 0 and moved["judge_diversity_change"] == 0 and moved["judge_sample_change"] == 0
    assert "blocks.1" in _modules(section, "judge.redundant")
    assert "first" not in _modules(section, "judge.redundant")
    assert section.details["branches"]["blocks.1"] == ["blocks.1.branch"]  # ablated by its branch, not the stream


def test_ablating_the_first_block_collapses_realness_and_diversity() -> None:
    section = _judge(build_toy_generator())
    assert _modules(section, "judge.critical_module") == {"first"}
    first = section.module_metrics["first"]
    intact = section.metrics["intact_realness"]
    assert intact > 0.8  # the intact samples are templates: the discriminator calls them real
    assert first["judge_realness_drop"] > 0.9 * intact  # every sample becomes the blurred average of the templates
    assert first["judge_diversity_change"] == pytest.approx(-1.0, abs=1e-6)  # and all are the same image


def test_a_block_that_draws_one_class_makes_that_class_vanish_and_is_named() -> None:
    section = _judge(build_painter_generator())
    named = {(f.module, f.evidence["class"]) for f in section.findings if f.id == "judge.class_specific"}
    assert named == {("painters.0", "one"), ("painters.1", "two")}
    painter = section.module_metrics["painters.0"]
    assert painter["judge_class_shift"] == pytest.approx(1 / 3, abs=1e-9)  # every class-1 sample became class 0
    assert painter["judge_condition_drop"] == pytest.approx(1 / 3, abs=1e-9)
    assert section.metrics["intact_condition_accuracy"] == 1.0
    assert "base" not in {m for m, _ in named}


def test_generator_and_judges_are_bit_identical_afterwards() -> None:
    generator, discriminator, classifier = build_toy_generator(), build_template_discriminator(), \
        build_template_classifier()
    models = (generator, discriminator, classifier)
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in models]
    z = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = generator(z)
    auditor.audit_generator(generator, discriminator, classifier, max_samples=96)
    for model, state in zip(models, before, strict=True):
        after = model.state_dict()
        assert all(torch.equal(after[k], v) for k, v in state.items())
        assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
        assert "forward" not in model.__dict__ and not any("forward" in m.__dict__ for m in model.modules())
    with torch.no_grad():
        assert torch.equal(generator(z), out)


def test_without_a_classifier_only_the_discriminator_judges() -> None:
    section = _judge(build_toy_generator(), classifier=False)
    keys = set(section.module_metrics["first"])
    assert keys == {"judge_realness_drop", "judge_diversity_change", "judge_sample_change"}
    assert "discriminator" in section.details["features"]
    assert _modules(section, "judge.critical_module") == {"first"}


def test_the_noise_is_fixed_by_the_seed() -> None:
    a = auditor.audit_generator(build_toy_generator(), build_template_discriminator(), max_samples=64, seed=5)
    b = auditor.audit_generator(build_toy_generator(), build_template_discriminator(), max_samples=64, seed=5)
    c = auditor.audit_generator(build_toy_generator(), build_template_discriminator(), max_samples=64, seed=6)
    assert a.section("judge").module_metrics == b.section("judge").module_metrics
    assert a.metadata.data_fingerprint == b.metadata.data_fingerprint != c.metadata.data_fingerprint
    assert a.metadata.task == "generation" and a.metadata.modality == "noise"
    # nothing made for classifiers; the weight spectra are the generator's
    assert [s.id for s in a.sections] == ["inventory", "judge", "weights"] and a.not_run == {}


def test_the_report_shows_the_sample_grid_in_html_and_pdf(tmp_path: Path) -> None:
    report = auditor.audit_generator(build_painter_generator(), build_template_discriminator(),
                                     build_template_classifier(), max_samples=60)
    judge = report.section("judge")
    assert [f.id for f in judge.figures] == ["judge.samples", "judge.drops", "judge.classes"]
    paths = save_report(report, tmp_path, formats=("html", "pdf"))
    html = Path(paths["html"]).read_text(encoding="utf-8")
    assert 'id="section-judge"' in html and "Samples of the intact and the ablated generators" in html
    assert Path(paths["pdf"]).read_bytes().startswith(b"%PDF")


def _write_config(tmp_path: Path, discriminator: str, extra: str = "") -> Path:
    config = tmp_path / "gan.toml"
    config.write_text(f"""
[model]
path = "tests.models:build_painter_generator"

[generator]
discriminator = {{ path = "{discriminator}" }}
classifier = {{ path = "tests.models:build_template_classifier" }}
{extra}

[data]
max_samples = 60
""", encoding="utf-8")
    return config


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "auditor"), "run", *args, "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_auditor_run_audits_a_generator_from_a_config_file(tmp_path: Path) -> None:
    done = _run(["--config", str(_write_config(tmp_path, "tests.models:build_template_discriminator")),
                 "--out", str(tmp_path / "out"), "--formats", "json"])
    assert done.returncode == 0, done.stderr
    report = auditor.load_report(tmp_path / "out" / "audit.json")
    assert {f.module for f in report.findings if f.id == "judge.class_specific"} == {"painters.0", "painters.1"}


def test_a_judge_that_cannot_read_the_samples_is_bad_input(tmp_path: Path) -> None:
    # the tiny CNN takes 1x8x8 images; the painter draws 1x4x4 (the generator given by options, no config)
    done = _run(["--model", "tests.models:build_painter_generator", "--discriminator", "tests.models:build_tiny_cnn",
                 "--out", str(tmp_path / "out")])
    assert done.returncode == 2
    assert "the judges could not read the generator's samples (shape (1, 4, 4))" in done.stderr


def test_a_noise_file_must_fit_the_generator(tmp_path: Path) -> None:
    noise = tmp_path / "noise.npz"
    np.savez(noise, x=np.zeros((10, 7), dtype=np.float32))
    done = _run(["--config", str(_write_config(tmp_path, "tests.models:build_template_discriminator")),
                 "--data", str(noise), "--out", str(tmp_path / "out")])
    assert done.returncode == 2
    assert "the noise has length 7, but the generator takes 4" in done.stderr


def test_resample_ablation_keeps_the_samples_varied_where_mean_ablation_collapses_them() -> None:
    config = auditor.AuditConfig.model_validate({"analyses": {"judge": {"mode": "resample"}}})
    section = _judge(build_toy_generator(), config=config)
    first = section.module_metrics["first"]
    # each sample gets another sample's spread noise: still one template each, just another one
    assert abs(first["judge_realness_drop"]) < 0.02 and abs(first["judge_diversity_change"]) < 0.05
    assert first["judge_sample_change"] > 0.5  # the samples did change
    assert "first" not in _modules(section, "judge.critical_module")
    assert section.module_metrics["blocks.1"]["judge_sample_change"] == 0  # an identity stays an identity
    assert "another sample of the same batch" in section.summary


class TwoStages(torch.nn.Module):
    """The toy generator with a second stage (an identity) after `first`: replacing either by its mean makes
    every sample the same image, so both are the main path: one finding, not two critical ones."""

    noise_dim = 4

    def __init__(self) -> None:
        super().__init__()
        toy = build_toy_generator()
        self.first, self.blocks, self.paint = toy.first, toy.blocks, toy.paint
        self.second = torch.nn.Linear(3, 3)
        with torch.no_grad():
            self.second.weight.copy_(torch.eye(3))
            self.second.bias.zero_()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.paint(self.blocks(self.second(self.first(z))))


def test_stages_that_each_make_every_sample_one_image_are_one_main_path_finding() -> None:
    section = _judge(TwoStages())
    (path,) = [f for f in section.findings if f.id == "judge.main_path"]
    assert path.module is None and path.evidence["modules"] == "first, second"
    assert "draws one image for every noise vector when any of 2 modules" in path.message
    assert not _modules(section, "judge.critical_module") & {"first", "second"}
    for stage in ("first", "second"):
        assert section.module_metrics[stage]["judge_diversity_change"] == pytest.approx(-1.0, abs=1e-6)
