"""Streaming per-module output statistics, combined across calls and batches in float64.

Per call we run a few reductions (sum, dot, the extremes, and a sign count where zeros are possible); the
NaN/Inf counts and per-unit activity are computed only when those cheap numbers say they are needed
(a non-finite mean, or zeros present). That keeps the walk near the cost of a plain forward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

# Modules whose 3-D outputs are (batch, channels, length), not (batch, tokens, features).
_CHANNELS_FIRST_1D = (
    nn.Conv1d, nn.ConvTranspose1d, nn.BatchNorm1d, nn.InstanceNorm1d,
    nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d,
)


@dataclass
class CallSummary:
    """One output tensor of one call, reduced to a handful of numbers."""

    n: int
    mean: float
    m2: float
    """Sum of squared deviations from the mean, over finite elements."""
    min: float
    max: float
    nonzero: int
    nan: int
    inf: int
    alive: torch.Tensor | None
    """Per unit: was it ever non-zero in this call (only computed when zeros are present)."""
    units: int | None


def unit_dim(t: torch.Tensor, module: nn.Module) -> int | None:
    """The dimension that indexes units: channels for conv maps, features for token or flat outputs."""
    if t.dim() < 2:
        return None
    if t.dim() >= 4 or (t.dim() == 3 and isinstance(module, _CHANNELS_FIRST_1D)):
        return 1
    return t.dim() - 1


class Scratch:
    """A reusable buffer for the sign(x) pass: allocating a fresh tensor of a large output on every
    call costs page faults that can exceed the reduction itself."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[torch.dtype, bool], torch.Tensor] = {}

    def get(self, numel: int, like: torch.Tensor) -> torch.Tensor:
        key = (like.dtype, like.is_cuda)  # cheaper than comparing device objects on every call
        buffer = self._buffers.get(key)
        if buffer is None or buffer.numel() < numel or buffer.get_device() != like.get_device():
            buffer = torch.empty(numel, dtype=like.dtype, device=like.device)
            self._buffers[key] = buffer
        return buffer[:numel]


def _moments(flat: torch.Tensor, signs: torch.Tensor) -> list[float]:
    """mean, variance, min, max and non-zero count of a 1-D tensor in two read-backs at most.

    Chosen for speed on CPU, measured: torch.var_mean is ~30x slower than a sum plus a dot product,
    so the variance is E[x^2] - E[x]^2 (clamped at 0; float32 sums are pairwise, accurate enough for a
    report); count_nonzero is ~10x slower than sign(x)·sign(x) on outputs with many zeros (it branches
    per element). Measured on a quiet machine: past ~64k elements amin + amax beat the fused aminmax by
    ~25%; below, one call is cheaper (timed one op alone under a load of 6-9, aminmax read faster at every
    size, but whole captures showed no gain: the rule stays as measured quietly).
    A tensor whose extremes are both of one sign has no zeros: its count is its size, and the sign pass
    (two of the six passes over the data) is skipped;
    CPU ops are synchronous, so reading the extremes first costs no wait. The count is only approximate
    past 2^24 elements and NaN makes it NaN: the caller recounts exactly when anything is non-finite.
    `signs` receives sign(x) when the count is taken (the caller's per-unit activity reads it then).
    """
    n = flat.numel()
    lo, hi = (flat.amin(), flat.amax()) if n >= 1 << 16 else torch.aminmax(flat)
    total, squares = flat.sum(), torch.dot(flat, flat)
    mean, sq_mean, lo_f, hi_f = torch.stack([total, squares, lo, hi]).tolist()
    if lo_f > 0 or hi_f < 0:  # False for NaN: counted below, and recounted exactly by the caller
        nonzero = float(n)
    else:
        torch.sign(flat, out=signs)
        nonzero = torch.dot(signs, signs).item()
    mean, sq_mean = mean / n, sq_mean / n
    return [mean, max(sq_mean - mean * mean, 0.0), lo_f, hi_f, nonzero]


def summarize(t: torch.Tensor, module: nn.Module, scratch: Scratch | None = None, *,
              need_alive: bool = True) -> CallSummary:
    """Reduces one floating-point output tensor; `t` must not be modified while this runs.

    `need_alive=False` skips the per-unit activity pass (the caller already saw every unit active).
    """
    x = t.detach()
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    n = x.numel()
    udim = unit_dim(x, module)
    units = x.shape[udim] if udim is not None else None
    if n == 0:
        return CallSummary(0, 0.0, 0.0, math.inf, -math.inf, 0, 0, 0, None, units)
    flat = x.reshape(-1)
    signs = (scratch or Scratch()).get(n, flat)
    mean_f, var_f, lo_f, hi_f, nonzero_f = _moments(flat, signs)
    nan = inf = 0
    all_finite = all(map(math.isfinite, (mean_f, var_f, lo_f, hi_f, nonzero_f)))
    nonzero = round(nonzero_f) if all_finite else int(torch.count_nonzero(x))
    alive = None
    if need_alive and udim is not None and nonzero < n:
        others = tuple(d for d in range(x.dim()) if d != udim)
        if all_finite:  # `signs` holds sign(x) in x's logical order; non-negative outputs need no abs
            per_unit = signs.view(x.shape) if lo_f >= 0 else signs.view(x.shape).abs_()
            alive = per_unit.amax(dim=others) > 0
        else:  # NaN would read as dead: use the exact (slower) test
            alive = x.ne(0).movedim(udim, -1).reshape(-1, x.shape[udim]).any(0)
    if not all_finite:
        nan = int(torch.isnan(x).sum())
        inf = int(torch.isinf(x).sum())
        values = flat[torch.isfinite(flat)].double()  # float64: finite values whose squares overflow
        n = values.numel()
        mean_f, var_f, lo_f, hi_f, _ = _moments(values, torch.empty_like(values)) if n \
            else (0.0, 0.0, math.inf, -math.inf, 0.0)
    return CallSummary(n, mean_f, var_f * n, lo_f, hi_f, nonzero, nan, inf, alive, units)


@dataclass
class RunningStats:
    """Combines CallSummaries (Chan et al.'s parallel variance) into whole-data statistics."""

    n: int = 0
    numel: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    nonzero: int = 0
    nan: int = 0
    inf: int = 0
    summaries: int = 0
    units: int | None = None
    units_vary: bool = False
    ever_alive: torch.Tensor | None = None
    all_alive: bool = False
    """Every unit has been non-zero at least once: no later call can make one dead."""

    def add(self, s: CallSummary) -> None:
        numel = s.n + s.nan + s.inf
        self.numel += numel
        self.nonzero += s.nonzero
        self.nan += s.nan
        self.inf += s.inf
        if s.n:
            total = self.n + s.n
            delta = s.mean - self.mean
            self.mean += delta * s.n / total
            self.m2 += s.m2 + delta * delta * self.n * s.n / total
            self.n = total
            self.min = min(self.min, s.min)
            self.max = max(self.max, s.max)
        if self.summaries == 0:
            self.units = s.units
        elif s.units != self.units:
            self.units_vary = True
        self.summaries += 1
        if self.units_vary or s.units is None:
            return
        if s.alive is None:
            if s.nonzero == numel and numel > 0:
                self.all_alive = True
            return
        self.ever_alive = s.alive.clone() if self.ever_alive is None else self.ever_alive | s.alive
        self.all_alive = bool(self.ever_alive.all())

    @classmethod
    def combine(cls, parts: list[RunningStats]) -> RunningStats:
        """The statistics of several streams at once (the calls of a module used more than once per forward):
        moments, extremes and counts always combine; per-unit activity only where every part has the same units."""
        out = cls()
        for part in parts:
            if part.summaries == 0:
                continue
            out.numel += part.numel
            out.nonzero += part.nonzero
            out.nan += part.nan
            out.inf += part.inf
            if part.n:
                total = out.n + part.n
                delta = part.mean - out.mean
                out.mean += delta * part.n / total
                out.m2 += part.m2 + delta * delta * out.n * part.n / total
                out.n = total
                out.min = min(out.min, part.min)
                out.max = max(out.max, part.max)
            if out.summaries == 0:
                out.units, out.units_vary = part.units, part.units_vary
                out.ever_alive = part.ever_alive.clone() if part.ever_alive is not None else None
                out.all_alive = part.all_alive
            elif part.units != out.units or part.units_vary:
                out.units_vary = True
            elif not out.units_vary:
                if part.ever_alive is not None:
                    out.ever_alive = part.ever_alive.clone() if out.ever_alive is None else out.ever_alive | part.ever_alive
                out.all_alive = out.all_alive or part.all_alive or (
                    out.ever_alive is not None and bool(out.ever_alive.all()))
            out.summaries += part.summaries
        return out

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.n) if self.n else 0.0

    @property
    def zero_fraction(self) -> float:
        return 1.0 - self.nonzero / self.numel if self.numel else 0.0

    @property
    def dead_units(self) -> int | None:
        """Units that were exactly zero for every sample and position seen."""
        mask = self.zero_mask
        return None if mask is None else int(mask.sum())

    @property
    def zero_mask(self) -> torch.Tensor | None:
        """Per unit: was it exactly zero for every sample and position seen (None: units unknown)."""
        if self.units is None or self.units_vary or self.numel == 0:
            return None
        if self.all_alive:
            return torch.zeros(self.units, dtype=torch.bool)
        if self.ever_alive is None:
            return torch.ones(self.units, dtype=torch.bool)
        return ~self.ever_alive.cpu()
