"""What the probes measured, per property and probed module (the section is written from these)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from auditor.analyses.probes.sets import ProbeSet, Property


@dataclass
class ModuleResult:
    """One property at one probed representation."""

    accuracy: float
    low: float
    high: float
    permuted: np.ndarray
    random_init: float | None = None
    mdl_bits: float | None = None
    compression: float | None = None
    random_compression: float | None = None
    head_lens: float | None = None
    alphas: list[float] = field(default_factory=list)
    low_end: int = 0
    high_end: int = 0


@dataclass
class PropertyResult:
    prop: Property
    probe_set: ProbeSet
    samples: int
    folds: int
    majority: float
    modules: dict[str, ModuleResult]
    threshold: float
    """95th percentile over permutations of the maximum over blocks."""
    note: str = ""
