"""The data fingerprint (sha256 of what was audited, after sampling), and audits comparable across machines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import auditor
from auditor.config import DataSpec
from auditor.subject.data import AuditData, load_data
from auditor.subject.fingerprint import data_fingerprint


def _arrays(x: np.ndarray, labels: list[int | str] | None) -> AuditData:
    return AuditData(kind="arrays", source="x", arrays=x.astype(np.float32), labels=labels)


def test_the_same_samples_give_the_same_fingerprint_whatever_the_path(tmp_path: Path) -> None:
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    for name in ("a.npz", "b.npz"):
        np.savez(tmp_path / name, x=x, y=np.arange(6) % 2)
    a, b = (load_data(DataSpec(path=str(tmp_path / n)), seed=0) for n in ("a.npz", "b.npz"))
    assert data_fingerprint(a) == data_fingerprint(b)
    assert len(data_fingerprint(a)) == 64


def test_any_change_to_a_sample_a_label_or_the_order_changes_it() -> None:
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    labels: list[int | str] = [0, 1, 0, 1, 0, 1]
    base = data_fingerprint(_arrays(x, labels))
    changed = x.copy()
    changed[3, 2] += 1e-3
    assert data_fingerprint(_arrays(changed, labels)) != base
    assert data_fingerprint(_arrays(x, [0, 1, 0, 1, 0, 0])) != base
    assert data_fingerprint(_arrays(x[::-1], labels[::-1])) != base
    assert data_fingerprint(_arrays(x, None)) != base
    assert data_fingerprint(_arrays(x, ["0", "1", "0", "1", "0", "1"])) != base


def test_sampling_is_part_of_the_fingerprint(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).normal(size=(40, 3)), y=np.arange(40) % 2)
    spec = DataSpec(path=str(tmp_path / "d.npz"), max_samples=10)
    assert data_fingerprint(load_data(spec, seed=0)) == data_fingerprint(load_data(spec, seed=0))
    assert data_fingerprint(load_data(spec, seed=0)) != data_fingerprint(load_data(spec, seed=1))


def test_texts_and_image_files_are_hashed_by_content(text_csv: Path, image_folder: Path) -> None:
    text = load_data(DataSpec(path=str(text_csv)), seed=0)
    images = load_data(DataSpec(path=str(image_folder)), seed=0)
    assert data_fingerprint(text) != data_fingerprint(images)
    assert text.texts is not None
    text.texts[0] += " "
    assert data_fingerprint(text) != data_fingerprint(load_data(DataSpec(path=str(text_csv)), seed=0))


def test_an_audit_records_the_fingerprint_and_no_local_path(tiny_cnn_npz: Path, tiny_cnn_safetensors: Path) -> None:
    report = auditor.audit("tests.models:build_tiny_cnn", tiny_cnn_npz, config=auditor.AuditConfig(
        model={"weights": str(tiny_cnn_safetensors)}), analyses=["performance"])
    assert report.metadata.data_fingerprint == data_fingerprint(load_data(DataSpec(path=str(tiny_cnn_npz)), seed=0))
    text = report.model_dump_json()
    for local in {str(tiny_cnn_npz.parent), str(tiny_cnn_safetensors.parent), str(Path.cwd()), str(Path.home())}:
        assert local not in text, local
    assert report.metadata.data_source == f"…/{tiny_cnn_npz.parent.name}/{tiny_cnn_npz.name}"
    details = json.loads(text)["sections"][0]["details"]
    assert len(details["predicted"].split()) == len(details["labels"].split()) == report.metadata.n_samples
