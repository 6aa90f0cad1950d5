"""A pass as data: what an executor runs, here or elsewhere (the plan's list of passes)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from auditor.walk.patch import Patch


@dataclass(frozen=True)
class PatchedPass:
    """One forward over the audit data with some modules patched; yields the model's scores per sample.

    Independent of every other pass, so an executor may run passes of this kind anywhere, in any order.
    """

    patches: Mapping[str, Patch]
    label: str = ""
