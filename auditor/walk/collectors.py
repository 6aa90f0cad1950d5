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
    varies: bool = False
    """The number of units changed between forwards (a model whose layer widths depend on the input): no
    per-unit mean."""

    def add(self, x: torch.Tensor, valid: torch.Tensor | None) -> None:
        if self.varies:
            return
        if valid is None:
            total = x.sum(dim=(0, 1), dtype=torch.float64)
            count = torch.full_like(total, x.shape[0] * x.shape[1])
        else:
            weights = valid.to(x.dtype).unsqueeze(-1)
            total = (x * weights).sum(dim=(0, 1), dtype=torch.float64)
            count = torch.full_like(total, float(valid.sum()))
        if self.total is None or self.count is None:
            self.total, self.count = total, count
        elif self.total.shape != total.shape:
            self.varies, self.total, self.count = True, None, None
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
class CallCollector:
    """What one call of a module (its k-th in each forward) left, one entry per forward, and this forward's part."""

    unit_means: UnitMeans | None = None
    top_k: TopK | None = None
    pooled_batches: list[torch.Tensor] = field(default_factory=list)
    """(batch, units) per forward; (batch, 0) NaN where the call did not run, or its output has no units."""
    pooled_input_batches: list[torch.Tensor] = field(default_factory=list)
    grad_norm_batches: list[torch.Tensor] = field(default_factory=list)
    grad_x_act_batches: list[torch.Tensor] = field(default_factory=list)
    relevance_batches: list[torch.Tensor | None] = field(default_factory=list)
    """None for a batch whose backward never reached the call (zero relevance, units unknown yet)."""
    grad_hooked: bool = False
    """The call's output took part in autograd at least once (else it has no gradient at all)."""
    per_sample: bool = True
    """False when the output is not batch-first (BERT's position embeddings, (1, tokens, hidden), are
    broadcast over the batch): its gradient has no per-sample value."""
    _pooled: torch.Tensor | None = None
    _pooled_input: torch.Tensor | None = None
    _peak: tuple[torch.Tensor, torch.Tensor] | None = None
    _grad_norm: torch.Tensor | None = None
    _grad_x_act: torch.Tensor | None = None
    _relevance: torch.Tensor | None = None

    def end_forward(self, batch: BatchContext, *, pooled: bool, pooled_input: bool, gradients: bool,
                    relevance: bool) -> None:
        """Closes one batch: what this forward's call produced becomes one row per sample (or a gap)."""
        missing = torch.full((batch.size, 0), float("nan"))
        if pooled:
            self.pooled_batches.append(self._pooled.cpu() if self._pooled is not None else missing)
        if pooled_input:
            self.pooled_input_batches.append(self._pooled_input.cpu() if self._pooled_input is not None else missing)
        if self.top_k is not None and self._peak is not None:
            self.top_k.add(*self._peak, batch.start)
        if gradients:
            zeros = torch.zeros(batch.size)
            self.grad_norm_batches.append(self._grad_norm.cpu() if self._grad_norm is not None else zeros)
            self.grad_x_act_batches.append(self._grad_x_act.cpu() if self._grad_x_act is not None else zeros)
        if relevance:
            self.relevance_batches.append(self._relevance.cpu() if self._relevance is not None else None)
        self._pooled = self._pooled_input = self._peak = None
        self._grad_norm = self._grad_x_act = self._relevance = None

    def relevance(self, sizes: list[int]) -> torch.Tensor | None:
        """(samples, units) gradient × activation per unit; zeros for batches no gradient reached."""
        units = next((r.shape[1] for r in self.relevance_batches if r is not None), None)
        if units is None or any(r is not None and r.shape[1] != units for r in self.relevance_batches):
            return None
        return torch.cat([r if r is not None else torch.zeros(n, units)
                          for r, n in zip(self.relevance_batches, sizes, strict=True)])


@dataclass
class ModuleCollector:
    """The per-module pieces one capture keeps beside the statistics, per call of the module within a forward.

    A module called once per forward has one `CallCollector`; one called k times has k, and what its calls
    make together (a mean of their pooled rows, a sum of their gradients) is derived from them at the end
    (`auditor.engine.capture`), not recorded twice.
    """

    unit_means: bool = False
    pooled: bool = False
    pooled_input: bool = False
    top_k: int = 0
    gradients: bool = False
    unit_relevance: bool = False
    relevance_of_input: bool = False
    """The relevance is of the module's first input, not its output (`Needs.input_relevance`)."""
    calls: list[CallCollector] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    """The size of every batch closed so far."""
    whole_top_k: TopK | None = None
    """A module called more than once per forward at one width: per unit, the top samples of its largest
    activation over all calls (None while it was called once, when it equals call 1's)."""
    whole_top_k_varies: bool = False
    """Its calls differ in width: there is no top-k of the module as a whole."""
    _forward_calls: int = 0
    """Calls that produced an output in this forward."""

    def _call(self, call: int) -> CallCollector:
        """The collector of the `call`-th call (1-based); a call seen for the first time gets gaps for the
        batches already closed."""
        while len(self.calls) < call:
            c = CallCollector(unit_means=UnitMeans() if self.unit_means else None,
                              top_k=TopK(self.top_k) if self.top_k else None)
            if self.calls:  # a later call: it did not run on the batches closed so far
                for n in self.sizes:
                    missing = torch.full((n, 0), float("nan"))
                    if self.pooled:
                        c.pooled_batches.append(missing)
                    if self.pooled_input:
                        c.pooled_input_batches.append(missing)
                    if self.gradients:
                        c.grad_norm_batches.append(torch.zeros(n))
                        c.grad_x_act_batches.append(torch.zeros(n))
                    if self.unit_relevance:
                        c.relevance_batches.append(None)
            self.calls.append(c)
        return self.calls[call - 1]

    def on_output(self, t: torch.Tensor, module: nn.Module, batch: BatchContext, call: int = 1) -> None:
        c = self._call(call)
        self._forward_calls = max(self._forward_calls, call)
        if not (self.unit_means or self.pooled or self.top_k):
            return
        view = by_unit(t, module, batch)
        if view is None:
            return
        x, valid = view
        if c.unit_means is not None:
            c.unit_means.add(x, valid)
        if self.pooled:
            c._pooled = pool(x, valid).float()
        if c.top_k is not None:
            c._peak = peak(x, valid)

    def on_input(self, t: torch.Tensor, module: nn.Module, batch: BatchContext, call: int = 1) -> None:
        """Pools the module's first positional input (called before the module runs)."""
        view = by_unit(t, module, batch)
        if view is not None:
            self._call(call)._pooled_input = pool(*view).float()

    def hooked(self, call: int) -> None:
        """The output of this call takes part in autograd."""
        self._call(call).grad_hooked = True

    def not_per_sample(self, call: int) -> None:
        self._call(call).per_sample = False

    def add_gradient(self, call: int, norm: torch.Tensor, grad_x_act: torch.Tensor) -> None:
        """Adds one call's per-sample gradient norm and gradient × activation."""
        c = self._call(call)
        c._grad_norm = norm if c._grad_norm is None else c._grad_norm + norm
        c._grad_x_act = grad_x_act if c._grad_x_act is None else c._grad_x_act + grad_x_act

    def add_relevance(self, call: int, relevance: torch.Tensor) -> None:
        """Adds one call's (batch, units) gradient × activation summed over positions."""
        c = self._call(call)
        c._relevance = relevance if c._relevance is None else c._relevance + relevance

    def end_forward(self, batch: BatchContext) -> None:
        """Closes one batch: what each call produced becomes one row per sample."""
        if self.top_k and not self.whole_top_k_varies and (self._forward_calls > 1 or self.whole_top_k is not None):
            self._merge_whole_top_k(batch)
        for c in self.calls:
            c.end_forward(batch, pooled=self.pooled, pooled_input=self.pooled_input, gradients=self.gradients,
                          relevance=self.unit_relevance)
        self.sizes.append(batch.size)
        self._forward_calls = 0

    def _merge_whole_top_k(self, batch: BatchContext) -> None:
        """Per sample and unit the largest activation over this forward's calls (where it peaked: in that call)."""
        peaks = [c._peak for c in self.calls if c._peak is not None]
        if not peaks:
            return
        if len({v.shape[1] for v, _ in peaks}) > 1:
            self.whole_top_k_varies, self.whole_top_k = True, None
            return
        if self.whole_top_k is None:  # until now every forward called it once: call 1's top-k is the module's
            first = self.calls[0].top_k
            assert first is not None
            self.whole_top_k = TopK(first.k, first.values, first.samples, first.positions)
        values = torch.stack([v for v, _ in peaks])
        best = values.argmax(dim=0, keepdim=True)
        positions = torch.stack([p for _, p in peaks]).gather(0, best).squeeze(0)
        self.whole_top_k.add(values.amax(dim=0), positions, batch.start)
