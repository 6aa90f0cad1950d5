"""The logit lens and direct logit attribution of a causal language model."""

from auditor.analyses.lens.analysis import Lens, LensParams

__all__ = ["Lens", "LensParams"]
