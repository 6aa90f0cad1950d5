"""The distribution name: free of other authors' packages on the index, and the one the README installs."""

from __future__ import annotations

import tomllib
from importlib.metadata import distribution
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TAKEN = {"model-auditor"}
"""Names another author's package holds on PyPI (model-auditor 0.1.16: a subgroup-metrics library)."""


def test_the_distribution_name_is_not_another_authors_and_the_readme_installs_it() -> None:
    name = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
    assert name not in TAKEN
    readme = (ROOT / "README.md").read_text()
    assert f"pip install {name} " in readme and not any(f"pip install {t}" in readme for t in TAKEN)
    for doc in ROOT.glob("docs/**/*"):
        if doc.is_file() and doc.suffix in {".md", ".yml"}:
            assert not any(f"install {t}" in doc.read_text() for t in TAKEN) and "-q model-auditor" not in doc.read_text()
    assert distribution(name).entry_points.select(group="console_scripts", name="auditor")
