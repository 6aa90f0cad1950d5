"""Probe sets: gratings at the model's input size (colour only for colour inputs), and labelled .npz files of
extra inputs for image models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import auditor
from auditor.config import AuditConfig
from auditor.errors import DataError
from auditor.analyses.probes.sets import gratings


def test_gratings_are_balanced_at_the_input_size_and_carry_colour_only_in_colour_inputs() -> None:
    mean, std = np.array([0.2, 0.4, 0.6]), np.array([0.5, 0.5, 0.5])
    x, props = gratings((3, 12, 20), mean, std, seed=0)
    assert x.shape[1:] == (3, 12, 20) and x.dtype == np.float32
    assert set(props) == {"orientation", "frequency", "colour"}
    for labels, classes in props.values():
        assert np.bincount(labels, minlength=len(classes)).min() == np.bincount(labels).max()  # balanced
    colour, names = props["colour"]
    red = x[colour == names.index("red")]
    assert (red[:, 0].mean() - mean[0]) > (red[:, 1].mean() - mean[1]) + 0.3  # the red channel dominates
    grey, grey_props = gratings((1, 8, 8), mean[:1], std[:1], seed=0)
    assert set(grey_props) == {"orientation", "frequency"}
    assert abs(float(grey.mean()) - 0.2) < 0.1  # on the data's own scale


def test_an_npz_of_extra_images_adds_its_label_arrays_as_properties(tiny_cnn_npz: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    shape = np.load(tiny_cnn_npz)["x"].shape[1:]
    side = np.arange(60) % 2
    x = rng.normal(size=(60, *shape)).astype(np.float32) + (side * 2.0 - 1.0)[:, None, None, None]
    path = tmp_path / "extra.npz"
    np.savez(path, x=x, side=side, parity=np.arange(60) % 3)
    config = AuditConfig.model_validate({"analyses": {"probes": {"data": str(path), "builtin": False}}})
    report = auditor.audit("tests.models:build_tiny_cnn", str(tiny_cnn_npz), config=config, analyses=["probes"])
    section = report.section("probes")
    assert section.error is None
    assert [p["property"] for p in section.details["properties"]] == ["label", "side", "parity"]
    side_peak = next(f for f in section.findings if f.id == "probes.peak_layer" and f.evidence["property"] == "side")
    assert side_peak.evidence["accuracy"] > 0.9  # the brightness offset is plain to every block
    np.savez(path, x=x[:, :, :4], side=side)  # the wrong input size
    with pytest.raises(DataError, match="the model takes"):
        auditor.audit("tests.models:build_tiny_cnn", str(tiny_cnn_npz), config=config, analyses=["probes"])
