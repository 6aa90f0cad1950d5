"""What the capture keeps of chosen modules beyond the statistics: per-unit means, pooled per-sample
representations, per-unit top-k samples, and gradients. Each collector sees a module's output the moment
the module returns (and its gradient when the backward reaches it) and keeps small reductions, never the
full tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from auditor.walk.stats import unit_dim


@dataclass
class BatchContext:
    """What the collectors need to know about the batch being run."""

    start: int
    """Index of the batch's first sample in the audit data."""
    size: int
    mask: torch.Tensor | None = None
    """(batch, tokens) attention mask of text inputs: padded positions are excluded."""


def by_unit(t: torch.Tensor, module: nn.Module, batch: BatchContext) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """The output as (batch, positions, units), with a (batch, positions) validity mask for padded tokens.

    None when the output has no per-sample units (not batch-first, or 1-D).
    """
    if t.dim() < 2 or t.shape[0] != batch.size:
        return None
    udim = unit_dim(t, module)
    if udim is None:
        return None
    x = t.detach()
    if not x.is_floating_point():
        return None
    x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    valid = None
    if (batch.mask is not None and x.dim() == 3 and udim == 2 and tuple(batch.mask.shape) == tuple(x.shape[:2])):
        valid = batch.mask.to(device=x.device, dtype=torch.bool)
    return x.movedim(udim, -1).reshape(x.shape[0], -1, x.shape[udim]), valid


@dataclass
class UnitMeans:
    """Per-unit sum and count over samples and positions, padding excluded, in float64."""

    total: torch.Tensor | None = None
    count: torch.Tensor | None = None

    def add(self, x: torch.Tensor, valid: torch.Tensor | None) -> None:
        if valid is None:
            total = x.sum(dim=(0, 1), dtype=torch.float64)
            count = torch.full_like(total, x.shape[0] * x.shape[1])
        else:
            weights = valid.to(x.dtype).unsqueeze(-1)
            total = (x * weights).sum(dim=(0, 1), dtype=torch.float64)
            count = torch.full_like(total, float(valid.sum()))
        if self.total is None or self.count is None or self.total.shape != total.shape:
            if self.total is not None:
                raise ValueError("the number of units changed between calls")
            self.total, self.count = total, count
        else:
            self.total += total
            self.count += count

    @property
    def mean(self) -> torch.Tensor:
        assert self.total is not None and self.count is not None
        return (self.total / self.count.clamp_min(1)).cpu()


def pool(x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """(batch, positions, units) -> (batch, units): mean over valid positions."""
    if valid is None:
        return x.mean(dim=1)
    weights = valid.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def peak(x: torch.Tensor, valid: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, positions, units) -> per sample and unit, the largest activation and its position."""
    if valid is not None:
        x = x.masked_fill(~valid.unsqueeze(-1), float("-inf"))
    values, positions = x.max(dim=1)
    return values, positions


@dataclass
class TopK:
    """Per unit, the k samples with the largest activation so far, with where in the sample it peaked."""

    k: int
    values: torch.Tensor | None = None
    """(units, k), largest first; -inf where fewer than k samples were seen."""
    samples: torch.Tensor | None = None
    """(units, k) sample indices into the audit data."""
    positions: torch.Tensor | None = None
    """(units, k) flat position (token, or row * width + column of a conv map) of the peak."""

    def add(self, values: torch.Tensor, positions: torch.Tensor, start: int) -> None:
        """Merges one batch: `values` and `positions` (batch, units) from `peak`."""
        batch = values.shape[0]
        samples = torch.arange(start, start + batch, device=values.device).unsqueeze(1).expand_as(values)
        vals, samp, pos = values.t().float().cpu(), samples.t().cpu(), positions.t().cpu()
        if self.values is not None and self.samples is not None and self.positions is not None:
            vals = torch.cat([self.values, vals], dim=1)
            samp = torch.cat([self.samples, samp], dim=1)
            pos = torch.cat([self.positions, pos], dim=1)
        k = min(self.k, vals.shape[1])
        top, index = vals.topk(k, dim=1)
        self.values, self.samples, self.positions = top, samp.gather(1, index), pos.gather(1, index)


@dataclass
class ModuleCollector:
    """The per-module pieces one capture keeps, beside the statistics, and this forward's partial sums."""

    unit_means: UnitMeans | None = None
    pooled: bool = False
    pooled_input: bool = False
    top_k: TopK | None = None
    gradients: bool = False
    unit_relevance: bool = False
    pooled_batches: list[torch.Tensor] = field(default_factory=list)
    pooled_input_batches: list[torch.Tensor] = field(default_factory=list)
    grad_norm_batches: list[torch.Tensor] = field(default_factory=list)
    grad_x_act_batches: list[torch.Tensor] = field(default_factory=list)
    relevance_batches: list[torch.Tensor | None] = field(default_factory=list)
    """None for a batch whose backward never reached the module (zero relevance, units unknown yet)."""
    grad_hooked: bool = False
    """The module's output took part in autograd at least once (else it has no gradient at all)."""
    per_sample: bool = True
    """False when the output is not batch-first (BERT's position embeddings, (1, tokens, hidden), are
    broadcast over the batch): its gradient has no per-sample value."""
    # This forward, summed (gradients) or averaged (pooled) over the calls of a reused module.
    _pooled: list[torch.Tensor] = field(default_factory=list)
    _pooled_input: list[torch.Tensor] = field(default_factory=list)
    _peaks: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    _grad_norm: torch.Tensor | None = None
    _grad_x_act: torch.Tensor | None = None
    _relevance: torch.Tensor | None = None
    _calls: int = 0

    def on_output(self, t: torch.Tensor, module: nn.Module, batch: BatchContext) -> None:
        self._calls += 1
        if not (self.unit_means or self.pooled or self.top_k):
            return
        view = by_unit(t, module, batch)
        if view is None:
            return
        x, valid = view
        if self.unit_means is not None:
            self.unit_means.add(x, valid)
        if self.pooled:
            self._pooled.append(pool(x, valid).float())
        if self.top_k is not None:
            self._peaks.append(peak(x, valid))

    def on_input(self, t: torch.Tensor, module: nn.Module, batch: BatchContext) -> None:
        """Pools the module's first positional input (called before the module runs)."""
        view = by_unit(t, module, batch)
        if view is not None:
            self._pooled_input.append(pool(*view).float())

    def add_gradient(self, norm: torch.Tensor, grad_x_act: torch.Tensor) -> None:
        """Adds one call's per-sample gradient norm and gradient × activation (a reused module: summed)."""
        self._grad_norm = norm if self._grad_norm is None else self._grad_norm + norm
        self._grad_x_act = grad_x_act if self._grad_x_act is None else self._grad_x_act + grad_x_act

    def add_relevance(self, relevance: torch.Tensor) -> None:
        """Adds one call's (batch, units) gradient × activation summed over positions."""
        self._relevance = relevance if self._relevance is None else self._relevance + relevance

    def end_forward(self, batch: BatchContext) -> None:
        """Closes one batch: what this forward's calls produced becomes one row per sample."""
        if self.pooled:
            self.pooled_batches.append(_mean_of_calls(self._pooled, batch))
        if self.pooled_input:
            self.pooled_input_batches.append(_mean_of_calls(self._pooled_input, batch))
        if self.top_k is not None and self._peaks:
            values = torch.stack([v for v, _ in self._peaks]).amax(dim=0) if len(self._peaks) > 1 else self._peaks[0][0]
            positions = self._peaks[0][1] if len(self._peaks) == 1 else \
                torch.stack([p for _, p in self._peaks]).gather(
                    0, torch.stack([v for v, _ in self._peaks]).argmax(dim=0, keepdim=True)).squeeze(0)
            self.top_k.add(values, positions, batch.start)
        if self.gradients:
            zeros = torch.zeros(batch.size)
            self.grad_norm_batches.append(self._grad_norm.cpu() if self._grad_norm is not None else zeros)
            self.grad_x_act_batches.append(self._grad_x_act.cpu() if self._grad_x_act is not None else zeros)
        if self.unit_relevance:
            self.relevance_batches.append(self._relevance.cpu() if self._relevance is not None else None)
        self._pooled, self._pooled_input, self._peaks, self._calls = [], [], [], 0
        self._grad_norm = self._grad_x_act = self._relevance = None

    def relevance(self, sizes: list[int]) -> torch.Tensor | None:
        """(samples, units) gradient × activation per unit; zeros for batches no gradient reached."""
        units = next((r.shape[1] for r in self.relevance_batches if r is not None), None)
        if units is None:
            return None
        return torch.cat([r if r is not None else torch.zeros(n, units)
                          for r, n in zip(self.relevance_batches, sizes, strict=True)])


def _mean_of_calls(pooled: list[torch.Tensor], batch: BatchContext) -> torch.Tensor:
    """One batch's pooled rows, averaged over the calls of a reused module; (batch, 0) when the module did not
    run on this batch, or its output has no units."""
    if not pooled:
        return torch.full((batch.size, 0), float("nan"))
    return (sum(pooled[1:], pooled[0]) / len(pooled)).cpu()
