"""`[analyses.trust]`: the checks' samples, methods, thresholds and the protected words or region."""


from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator




Region = Literal["border", "corners", "center", "box"]


class TrustParams(BaseModel):
    """`[analyses.trust]`. The defaults keep each demo model's section around a minute on 2 CPU cores."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    methods: tuple[str, ...] = ()
    """Explainers to check (default: integrated_gradients, input_x_gradient, and for images the signed gradient)."""
    samples: int = Field(16, ge=2)
    """Samples explained at every randomization step and perturbed for the deletion/insertion curves."""
    n_steps: int = Field(8, ge=2, le=1000)
    """Integrated Gradients steps. Maps are compared by rank, and 8 points settle it: on the digits CNN, 8-step
    against 64-step maps rank-correlate 0.95–0.99 per sample."""
    baseline: Literal["zeros", "mean"] = "zeros"
    """Images and arrays: the attribution baseline and the deletion fill (black or the data mean)."""
    memory_budget_mb: int = Field(512, ge=16)
    sanity_threshold: float = Field(0.5, gt=0.0, le=1.0)
    """`trust.sanity_failed` when |signed rank correlation| after full randomization exceeds this."""
    deletion_steps: int = Field(16, ge=2, le=200)
    random_orders: int = Field(4, ge=1, le=64)
    deletion_fill: Literal["impute", "baseline", "blur"] = "impute"
    """Images: what deleted patches become: ROAD's noisy linear imputation from the pixels around them (Rong et al.,
    2022; stays near the data), the baseline, or a blurred copy of the image. Arrays take the baseline, text the
    pad token."""
    patch: int | None = Field(None, ge=1)
    """Images: the side of the square patches deletion removes together (default: the shorter side / 8, rounded half
    up, at least 1: 32 × 32 -> 4 × 4 patches, 64 positions; 16 × 16 -> 2 × 2; 224 × 224 -> 28 × 28)."""
    impute_noise: float = Field(0.01, ge=0.0)
    """ROAD's noise on imputed pixels, as a share of the image's standard deviation in each channel."""
    collapse_area: float = Field(0.1, ge=0.0, lt=1.0)
    """Random deletion 'collapses' the prediction when its area, rescaled to the drop (0: the target's probability
    falls to its end value at the first step, 0.5: a straight fall), is below this: the test is then inconclusive."""
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    """Significance level of the faithfulness test (and of its power check)."""
    word_pairs: tuple[tuple[str, str], ...] | None = None
    """Text: words swapped in the counterfactual test (default: the English list shipped with the package)."""
    control_pairs: tuple[tuple[str, str], ...] | None = None
    """Text: neutral word pairs swapped as a control (default: the shipped list, film↔movie, shop↔store...; ()
    for none). Protected swaps count as reliance only where they move predictions more than these do."""
    protected_words: tuple[str, ...] | None = None
    """Text: words whose attribution share is reported (default: every word of `word_pairs`)."""
    share_samples: int = Field(64, ge=1)
    """Text: samples containing a protected word whose attribution share is measured."""
    region: Region | None = None
    """Images: a region to measure (attribution share) and replace (counterfactual); none by default."""
    region_size: float = Field(0.125, gt=0.0, le=0.5)
    """`border` width and `corners`/`center` side, as a share of the image's shorter side."""
    region_box: tuple[int, int, int, int] | None = None
    """`box`: top, left, height, width in input pixels."""
    region_fill: Literal["baseline", "blur"] = "baseline"
    flip_threshold: float = Field(0.05, ge=0.0, le=1.0)
    """`trust.protected_feature` when this share of edited predictions (overall or in a class) flips ..."""
    probability_threshold: float = Field(0.05, ge=0.0, le=1.0)
    """... or when the mean |change| of the target's probability exceeds this."""

    @model_validator(mode="after")
    def _box(self) -> TrustParams:
        if self.region == "box" and self.region_box is None:
            raise ValueError("region = 'box' needs region_box = [top, left, height, width]")
        return self


