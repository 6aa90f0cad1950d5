"""Can the explanations be trusted? Three checks an attribution map must pass before it is evidence.

- **Sanity** (Adebayo et al., 2018): re-initialize the weights cascading from the output down, on a copy
  of the model, and recompute the maps of a few samples at each step. Maps that stay alike after the
  model has been destroyed describe the input, not the model. Per method and step: Spearman's rank
  correlation of the signed maps and, for images, the SSIM of the absolute maps (for text and arrays the
  rank correlation of the absolute maps), beside each map's correlation with the input itself (what an
  edge detector would give): methods that multiply by the input (IG, gradient × input) keep a high
  absolute-map similarity after full randomization; the report says so instead of hiding it.
  `trust.sanity_failed` (warn) when a method's signed maps after full randomization still correlate
  above `sanity_threshold` with the originals: it judges the explainer, not the model.
- **Faithfulness** (Petsiuk et al., 2018): deletion and insertion curves against random orders, with a
  one-sided Wilcoxon test over samples; images lose square patches filled by ROAD's noisy linear
  imputation (Rong et al., 2022), which stays near the data where black pixels do not (Hooker et al.,
  2019). The test's power is measured on the model first: occlusion of the same patches (faithful by
  construction) must beat random orders and random maps must not. Then `trust.unfaithful` (warn) when a
  method's order is not better than random; without power `trust.faithfulness_inconclusive` (info) says
  why (random deletion already collapses the prediction, or the references are not told apart).
- **Reliance on protected features**: the share of attribution that named words or an image region take,
  per class; and counterfactual edits, the test of reliance rather than attention: swap word pairs
  (he↔she, first names of different groups; a default English list ships with the package) or replace a
  region, and measure the change of the target's probability and the share of flipped predictions, per
  class, with intervals. `trust.protected_feature` (warn; a policy can make it fail).

Cost: (steps + 1) × methods explanations of `samples` samples (IG: n_steps forwards and backwards each);
2 × (deletion_steps + 1) × (random_orders + methods + 2) forwards per sample, plus one per position
(occlusion); one forward per edited sample.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from scipy import stats as stats_test
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from auditor.kit.captum import internal_batch_size
from auditor.engine.analysis import Analysis, AuditContext, PlanContext
from auditor.analyses.trust_faithfulness import DeletionTest
from auditor.errors import ConfigError
from auditor.schema.findings import Finding, Severity
from auditor.kit.figures import new_figure, to_figure
from auditor.schema.report import Cost, Figure, Section, Table
from auditor.subject import Task
from auditor.trust import faithfulness as faith
from auditor.trust.counterfactual import (WordSwapper, blur, bootstrap_mean, default_word_pairs, region_mask, wilson,
                                          word_pattern)
from auditor.trust.explainers import (IMAGE_EXPLAINERS, MULTIPLIES_BY_INPUT, SHORT, TEXT_EXPLAINERS, TITLES,
                                      Explainer, ExplainSetup)
from auditor.trust.randomize import Group, cascade, cascade_groups
from auditor.trust.similarity import rank_correlation, ssim

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


class Trust(Analysis):
    """Sanity (randomization), faithfulness (deletion/insertion) and protected-feature reliance checks."""

    id: ClassVar[str] = "trust"
    title: ClassVar[str] = "Can the explanations be trusted?"
    tasks: ClassVar[frozenset[Task]] = frozenset({"classification"})
    params_type: ClassVar[type[BaseModel]] = TrustParams
    cost_note: ClassVar[str] = ("explanations of 16 samples at every randomization step; deletion/insertion curves "
                                "(methods, two references, random orders) and occlusion of every position (the "
                                "test's power); one forward per counterfactual edit")

    def __init__(self, params: TrustParams | None = None, *, explainers: Mapping[str, Explainer] | None = None) -> None:
        self.params: TrustParams = params or TrustParams()
        self.extra = dict(explainers or {})
        """Explainers beyond the built-in ones, by name (a new method, or one a test plants)."""

    def not_applicable(self, ctx: PlanContext) -> str | None:
        reason = super().not_applicable(ctx)
        if reason is None and ctx.subject.modality == "text" \
                and not any(b.kind == "embeddings" for b in ctx.blocks):
            return "the text model has no embeddings module to attribute over"
        return reason

    def explainers(self, text: bool) -> dict[str, Explainer]:
        known = {**(TEXT_EXPLAINERS if text else IMAGE_EXPLAINERS), **self.extra}
        names = self.params.methods or (tuple(TEXT_EXPLAINERS if text else IMAGE_EXPLAINERS) + tuple(self.extra))
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(f"[analyses.trust] methods names unknown explainers {unknown}; known: {sorted(known)}")
        return {n: known[n] for n in names}

    def cost(self, ctx: PlanContext) -> Cost:
        p, n = self.params, max(len(ctx.subject), 1)
        s = min(p.samples, n)
        methods = self.params.methods or (("a", "b") if ctx.subject.modality == "text" else ("a", "b", "c"))
        steps = len(ctx.blocks) + 1
        per_explain = p.n_steps + len(methods)  # IG plus one pass for each gradient method
        sanity = steps * s * per_explain
        positions = self._positions(ctx)
        # the curves of every method, of the two references (occlusion, random maps) and of the random orders;
        # occlusion itself: one forward per position
        deletion = s * (2 * (p.deletion_steps + 1) * (p.random_orders + len(methods) + 2) + positions)
        edits = 2 * n
        return Cost(forwards=(sanity + deletion + edits) / n, backwards=sanity / n,
                    note=f"{s} samples explained at ~{steps} randomization steps; deletion/insertion curves with "
                         f"{p.random_orders} random orders and two references (occlusion of the {positions} "
                         "positions, one forward each, and random maps); counterfactual edits")

    def _positions(self, ctx: PlanContext) -> int:
        """How many positions deletion ranks per sample: patches, features or (at most) tokens."""
        first = ctx.subject.adapter.encode(0, 1)
        if "input_ids" in first and not any(v.is_floating_point() for v in first.values()):
            return int(first["input_ids"].shape[1])
        x = next(v for v in first.values() if v.is_floating_point())
        if x.dim() == 4:
            side = self.params.patch or faith.patch_side(x.shape[2], x.shape[3])
            return int(faith.patch_ids(x.shape[2], x.shape[3], side).max()) + 1
        return int(x[0].numel())

    def run(self, ctx: AuditContext) -> Section:
        return _TrustRun(self, ctx).run()


def _short(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[-2:]) if len(parts) > 2 else (name or "model")


class _TrustRun:
    def __init__(self, analysis: Trust, ctx: AuditContext) -> None:
        self.analysis, self.ctx, self.p = analysis, ctx, analysis.params
        self.subject = ctx.subject
        first = self.subject.adapter.encode(0, 1)
        self.text = "input_ids" in first and not any(v.is_floating_point() for v in first.values())
        key = "input_ids" if self.text else next(k for k, v in first.items() if v.is_floating_point())
        self.x_dims = first[key].dim()
        self.first = first[key]
        self.targets = ctx.targets
        embeddings = next((b.name for b in ctx.blocks if b.kind == "embeddings"), None)
        self.setup = ExplainSetup(subject=self.subject, keys=list(first), key=key, baseline=self._baseline,
                                  embeddings=embeddings, n_steps=self.p.n_steps,
                                  internal_batch_size=internal_batch_size(self.subject, self.p.memory_budget_mb))
        self.methods = analysis.explainers(self.text)
        self.markers = self.subject.adapter.marker_ids() if self.text else []

    # --- inputs ----------------------------------------------------------------------------------------

    def _baseline(self, x: torch.Tensor) -> torch.Tensor:
        if self.text:
            return self.subject.adapter.baseline_ids(x)
        if self.p.baseline == "mean":
            mean = self.subject.input_means(self.ctx.config.batch_size)[self.setup.key]
            return mean.to(x.device).expand_as(x).contiguous()
        return torch.zeros_like(x)

    def _pick_samples(self) -> list[int]:
        """A seeded draw balanced over classes, correctly classified samples first."""
        n = len(self.subject)
        rng = np.random.default_rng(self.ctx.config.seed)
        order = rng.permutation(n)
        correct = (self.ctx.clean.predictions == self.targets).numpy() if self.subject.labels is not None \
            else np.ones(n, dtype=bool)
        by_class: dict[int, list[int]] = defaultdict(list)
        for i in order:
            by_class[int(self.targets[i])].append(int(i))
        for c in by_class:
            by_class[c].sort(key=lambda i: not correct[i])  # stable: correct ones first, seeded order kept
        picked: list[int] = []
        while len(picked) < min(self.p.samples, n):
            for c in sorted(by_class):
                if by_class[c] and len(picked) < self.p.samples:
                    picked.append(by_class[c].pop(0))
        return sorted(picked)

    def _content(self, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Per sample, the flat map positions a reader sees: every pixel/feature, or the real tokens."""
        key = self.setup.key
        rows = inputs[key].shape[0]
        if not self.text:
            size = int(np.prod(inputs[key].shape[2:])) if self.x_dims >= 4 else int(np.prod(inputs[key].shape[1:]))
            return [torch.arange(size) for _ in range(rows)]
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask", torch.ones_like(ids)).bool()
        markers = torch.tensor(self.markers, dtype=ids.dtype)
        content = mask & ~torch.isin(ids, markers)
        return [torch.nonzero(row).flatten() for row in content]

    def _explain(self, name: str, model: nn.Module, inputs: dict[str, torch.Tensor],
                 target: torch.Tensor) -> torch.Tensor:
        maps = self.methods[name](self.setup, model, inputs, target)
        return maps.detach().float().reshape(maps.shape[0], -1) if self.x_dims < 4 or self.text \
            else maps.detach().float()

    # --- the run ---------------------------------------------------------------------------------------

    def run(self) -> Section:
        p = self.p
        samples = self._pick_samples()
        inputs = self.subject.encode_samples(samples)
        target = self.targets[samples]
        content = self._content(inputs)
        model = self.subject.model
        originals = {m: self._explain(m, model, inputs, target) for m in self.methods}
        metrics: dict[str, float] = {}
        findings: list[Finding] = []
        tables: list[Table] = []
        figures: list[Figure] = []
        module_metrics: dict[str, dict[str, float]] = {}
        sanity = self._sanity(inputs, target, content, originals, module_metrics)
        metrics.update(sanity["metrics"])
        findings += sanity["findings"]
        tables.append(sanity["table"])
        figures.append(sanity["figure"])
        if sanity.get("maps") is not None:
            figures.append(sanity["maps"])
        if sanity.get("example") is not None:
            tables.append(sanity["example"])
        faithful = DeletionTest(self.ctx, p, key=self.setup.key, first=self.first, text=self.text,
                                baseline=self._baseline, methods=list(self.methods)).run(inputs, target, content,
                                                                                        originals)
        metrics.update(faithful["metrics"])
        findings += faithful["findings"]
        tables.append(faithful["table"])
        figures.append(faithful["figure"])
        protected = self._protected(samples, inputs, content, originals)
        metrics.update(protected["metrics"])
        findings += protected["findings"]
        if protected.get("table") is not None:
            tables.append(protected["table"])
        details: dict[str, Any] = {"samples": samples, "methods": list(self.methods),
                                   "steps": sanity["steps"], "protected": protected["details"],
                                   "faithfulness": faithful["details"]}
        summary = (f"{len(samples)} samples (balanced over classes) explained by "
                   + ", ".join(TITLES.get(m, m) for m in self.methods)
                   + f" on the trained model and after each of {len(sanity['steps'])} cascading re-initializations "
                   "(a copy; the model audited is untouched); " + faithful["summary"] + "; "
                   + protected["summary"] + " " + sanity["note"])
        return Section(id=self.analysis.id, title=self.analysis.title, summary=summary.strip(), metrics=metrics,
                       findings=findings, tables=tables, figures=figures, details=details,
                       module_metrics=module_metrics)

    # --- sanity ----------------------------------------------------------------------------------------

    def _similarities(self, a: torch.Tensor, b: torch.Tensor, content: list[torch.Tensor]) -> tuple[float, float]:
        """Mean over samples: signed rank correlation, and SSIM (images) or |map| rank correlation."""
        signed, absolute = [], []
        for i, where in enumerate(content):
            x, y = a[i].flatten()[where], b[i].flatten()[where]
            signed.append(rank_correlation(x, y))
            absolute.append(ssim(a[i].abs(), b[i].abs()) if a.dim() == 3 else rank_correlation(x.abs(), y.abs()))
        return float(np.mean(signed)), float(np.mean(absolute))

    def _input_correlation(self, maps: torch.Tensor, inputs: dict[str, torch.Tensor],
                           content: list[torch.Tensor]) -> float | None:
        """Images and arrays: how much |map| ranks like |input − baseline| (an edge detector's answer)."""
        if self.text:
            return None
        x = inputs[self.setup.key]
        edge = (x - self._baseline(x)).abs()
        edge = edge.sum(dim=1) if edge.dim() >= 4 else edge
        return float(np.mean([rank_correlation(maps[i].flatten()[w].abs(), edge[i].flatten()[w])
                              for i, w in enumerate(content)]))

    def _sanity(self, inputs: dict[str, torch.Tensor], target: torch.Tensor, content: list[torch.Tensor],
                originals: dict[str, torch.Tensor], module_metrics: dict[str, dict[str, float]]) -> dict[str, Any]:
        ctx, p = self.ctx, self.p
        order = {name: record.order for name, record in ctx.capture.records.items()}
        groups = cascade_groups(self.subject.model, ctx.blocks, order)
        curves: dict[str, list[tuple[float, float]]] = {m: [(1.0, 1.0)] for m in self.methods}
        kept: dict[int, dict[str, torch.Tensor]] = {}
        last: dict[str, torch.Tensor] = {}
        keep_at = {0, len(groups) // 2, len(groups) - 1}
        previous: torch.Tensor | None = None
        with cascade(self.subject.model, groups, seed=ctx.config.seed) as steps:
            for k, (group, clone) in enumerate(ctx.progress.track(steps, total=len(groups),
                                                                  description="randomization cascade")):
                with torch.no_grad():
                    scores = self.subject.adapter.forward(clone, inputs)
                # A module the decision never reads (MiniLM's pooler under a mean-pooling head) leaves the
                # function unchanged: the maps are the previous step's, not worth recomputing.
                unchanged = previous is not None and torch.equal(scores, previous) and bool(last)
                previous = scores
                for m in self.methods:
                    maps = last[m] if unchanged else self._explain(m, clone, inputs, target)
                    signed, absolute = self._similarities(originals[m], maps, content)
                    curves[m].append((signed, absolute))
                    module_metrics.setdefault(group.name, {})[f"sanity_correlation/{m}"] = signed
                    if k in keep_at:
                        kept.setdefault(k, {})[m] = maps
                    last[m] = maps
        metrics: dict[str, float] = {}
        findings: list[Finding] = []
        notes = []
        similarity = "SSIM of |maps|" if self.x_dims >= 4 and not self.text else "rank correlation of |maps|"
        for m in self.methods:
            signed, absolute = curves[m][-1]
            metrics[f"sanity_correlation/{m}"] = signed
            metrics[f"sanity_similarity/{m}"] = absolute
            before = self._input_correlation(originals[m], inputs, content)
            after = self._input_correlation(last[m], inputs, content) if m in last else None
            if before is not None and after is not None:
                metrics[f"input_correlation/{m}"] = before
                metrics[f"input_correlation_random/{m}"] = after
                if m in MULTIPLIES_BY_INPUT:
                    notes.append(f"{TITLES.get(m, m)} multiplies by the input, so its absolute maps keep a "
                                 f"{similarity} of {absolute:.2f} after full randomization and rank like the input "
                                 f"itself ({after:.2f}); its signed maps ({signed:.2f}) are the test.")
            if abs(signed) > p.sanity_threshold:
                findings.append(Finding(
                    id="trust.sanity_failed", severity=Severity.WARN,
                    message=(f"{TITLES.get(m, m)} fails the randomization sanity check: with every weight of the "
                             f"model re-initialized, its maps still correlate {signed:.2f} (signed rank correlation, "
                             f"threshold {p.sanity_threshold:.2f}) with the trained model's. They describe the input "
                             "more than the model; do not read them as evidence of what the model learned."),
                    evidence={"method": m, "signed_correlation": round(signed, 4),
                              "absolute_similarity": round(absolute, 4), "threshold": p.sanity_threshold}))
        labels = ["trained", *[_short(g.name) for g in groups]]
        table = Table(id="trust.sanity", title="Randomization cascade: similarity to the trained model's maps",
                      columns=["step", "re-initialized down to", "parameters", *[
                          f"{SHORT.get(m, m)} {kind}" for m in self.methods for kind in ("signed", "|map|")]],
                      rows=[[k, g.name or "(model)", g.parameters,
                             *[round(curves[m][k + 1][j], 4) for m in self.methods for j in (0, 1)]]
                            for k, g in enumerate(groups)],
                      caption=f"Mean over samples: Spearman rank correlation of the signed maps, and {similarity}, "
                              + "(" + ", ".join(f"{SHORT.get(m, m)}: {TITLES.get(m, m)}" for m in self.methods) + ") "
                              "between each step's maps and the trained model's. Step k re-initializes every "
                              "module above it too (cascading, output first).")
        figure = self._sanity_figure(labels, curves, similarity)
        out: dict[str, Any] = {"metrics": metrics, "findings": findings, "table": table, "figure": figure,
                               "steps": [g.name for g in groups], "note": " ".join(notes)}
        if self.x_dims >= 4 and not self.text:
            out["maps"] = self._maps_figure(inputs, originals, kept, groups)
        elif self.text:
            out["example"] = self._text_example(inputs, content, originals, last)
        return out

    def _sanity_figure(self, labels: list[str], curves: dict[str, list[tuple[float, float]]],
                       similarity: str) -> Figure:
        with new_figure(7.5, 3.0) as (fig, _):
            fig.clf()
            axes = fig.subplots(1, 2, sharex=True)
            xs = np.arange(len(labels))
            for m, values in curves.items():
                axes[0].plot(xs, [v[0] for v in values], marker="o", ms=3, label=TITLES.get(m, m))
                axes[1].plot(xs, [v[1] for v in values], marker="o", ms=3, label=TITLES.get(m, m))
            for ax, title in zip(axes, ("signed maps: rank correlation", similarity), strict=True):
                ax.set_title(title, fontsize=8)
                ax.axhline(0.0, color="#9ca3af", lw=0.6)
                ax.set_ylim(-0.25, 1.05)
                ax.set_xticks(xs, labels, rotation=60, ha="right", fontsize=6)
                ax.tick_params(axis="y", labelsize=7)
                ax.spines[["top", "right"]].set_visible(False)
            axes[0].axhline(self.p.sanity_threshold, color="#dc2626", lw=0.8, ls="--")
            axes[0].legend(fontsize=6, frameon=False)
            return to_figure(fig, id="trust.sanity", title="Sanity check: maps as the model is destroyed",
                             alt="Similarity of attribution maps to the trained model's as layers are re-initialized",
                             caption="Left to right, more of the model is re-initialized (output first). A trustworthy "
                                     "method's curve falls towards 0; the dashed red line is the sanity threshold.")

    def _maps_figure(self, inputs: dict[str, torch.Tensor], originals: dict[str, torch.Tensor],
                     kept: dict[int, dict[str, torch.Tensor]], groups: list[Group]) -> Figure:
        x = inputs[self.setup.key]
        steps = sorted(kept)
        samples = list(range(min(2, x.shape[0])))
        cols = 2 + len(steps)
        rows = len(samples) * len(self.methods)
        with new_figure(1.0 + 1.1 * cols, 0.4 + 1.05 * rows) as (fig, _):
            fig.clf()
            axes = fig.subplots(rows, cols, squeeze=False)
            for si, i in enumerate(samples):
                picture = x[i].detach().float()
                picture = picture[0] if picture.shape[0] == 1 else picture.permute(1, 2, 0)
                lo, hi = float(picture.min()), float(picture.max())
                picture = (picture - lo) / (hi - lo) if hi > lo else picture * 0
                for mi, m in enumerate(self.methods):
                    r = si * len(self.methods) + mi
                    axes[r, 0].imshow(picture.numpy(), cmap="gray" if picture.dim() == 2 else None)
                    series = [originals[m][i]] + [kept[k][m][i] for k in steps]
                    for c, heat in enumerate(series, start=1):
                        bound = float(heat.abs().max()) or 1.0
                        axes[r, c].imshow((heat / bound).numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
                    axes[r, 0].set_ylabel(f"#{i}\n{TITLES.get(m, m)}", fontsize=6)
            titles = ["input", "trained", *[f"to {_short(groups[k].name)}" for k in steps]]
            for c, title in enumerate(titles):
                axes[0, c].set_title(title, fontsize=7)
            for ax in axes.flat:
                ax.set_xticks([])
                ax.set_yticks([])
            return to_figure(fig, id="trust.sanity_maps", title="Maps as the model is re-initialized",
                             alt="Attribution maps of two samples for the trained model and after re-initialization steps",
                             caption="Signed maps, each scaled to its own largest |value| (red raises the target's "
                                     "log-probability, blue lowers it). 'to X': every module from the output down to X "
                                     "re-initialized; the last column is the fully random model.")

    def _text_example(self, inputs: dict[str, torch.Tensor], content: list[torch.Tensor],
                      originals: dict[str, torch.Tensor], last: dict[str, torch.Tensor]) -> Table:
        tokenizer = self.subject.loaded.tokenizer
        ids = inputs["input_ids"]
        rows = []
        for i in range(min(3, ids.shape[0])):
            where = content[i]
            tokens = tokenizer.convert_ids_to_tokens(ids[i][where].tolist())
            text = tokenizer.convert_tokens_to_string(tokens)
            for m in self.methods:
                def top(maps: torch.Tensor, i: int = i, where: torch.Tensor = where,
                        tokens: list[str] = tokens) -> str:
                    values = maps[i].flatten()[where]
                    best = values.argsort(descending=True)[:3].tolist()
                    return ", ".join(f"{tokens[b]} ({float(values[b]):+.2g})" for b in best)
                rows.append([text, TITLES.get(m, m), top(originals[m]), top(last[m]) if m in last else ""])
        return Table(id="trust.sanity_text", title="Top tokens before and after full randomization",
                     columns=["sample", "method", "trained model", "fully random model"], rows=rows,
                     caption="The three tokens with the largest signed attribution toward the target class. A "
                             "trustworthy method's choice changes once the model is destroyed.")

    # --- protected features ----------------------------------------------------------------------------

    def _protected(self, samples: list[int], inputs: dict[str, torch.Tensor], content: list[torch.Tensor],
                   originals: dict[str, torch.Tensor]) -> dict[str, Any]:
        if self.text:
            return self._protected_words()
        if self.p.region is None or self.x_dims < 4:
            return {"metrics": {}, "findings": [], "details": {},
                    "summary": "no protected region configured ([analyses.trust] region) for images."}
        return self._protected_region(samples, inputs, originals)

    def _class_name(self, c: int) -> str:
        names = self.subject.class_names
        return names[c] if 0 <= c < len(names) else str(c)

    def _changes(self, indices: list[int], before: torch.Tensor, after: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Per edited sample: the change of its target class's probability, and whether its prediction flipped."""
        target = self.targets[indices]
        change = (after.gather(1, target[:, None]) - before.gather(1, target[:, None])).flatten().double().numpy()
        return change, (after.argmax(1) != before.argmax(1)).numpy()

    def _edit_effects(self, indices: list[int], before: torch.Tensor, after: torch.Tensor,
                      share: Mapping[str, float] | None, control: tuple[np.ndarray, np.ndarray] | None = None
                      ) -> tuple[dict[str, float], list[list[Any]], list[Finding], dict[str, Any]]:
        """Probability change of the target and flips, overall and per class, with intervals; the finding.

        With a `control` (the changes and flips of neutral edits), the edit counts as reliance only where it
        moves predictions more than the control does: flips by Fisher's exact test, |change| by Mann-Whitney,
        one-sided, Bonferroni over the two."""
        p = self.p
        target = self.targets[indices]
        change, flips = self._changes(indices, before, after)
        seed = self.ctx.config.seed
        rows: list[list[Any]] = []
        worst: tuple[str, float, int] | None = None
        groups: list[tuple[str, np.ndarray]] = [("all", np.ones(len(indices), dtype=bool))]
        groups += [(self._class_name(c), (target == c).numpy()) for c in sorted(set(target.tolist()))]
        stats: dict[str, Any] = {}
        for name, sel in groups:
            n = int(sel.sum())
            if n == 0:
                continue
            k = int(flips[sel].sum())
            low, high = wilson(k, n)
            mean = float(change[sel].mean())
            c_low, c_high = bootstrap_mean(change[sel], seed=seed)
            rows.append([name, n, round(share[name], 4) if share is not None and name in share else "",
                         round(k / n, 4), f"[{low:.3f}, {high:.3f}]", round(mean, 4),
                         f"[{c_low:.3f}, {c_high:.3f}]", round(float(np.abs(change[sel]).mean()), 4)])
            stats[name] = {"n": n, "flips": k, "flip_rate": k / n, "mean_change": mean,
                           "mean_abs_change": float(np.abs(change[sel]).mean())}
            # a class counts against the model only where its flips are evidence: the Wilson interval's
            # lower end above the threshold (2 flips of 37 is not)
            if name != "all" and low > p.flip_threshold and (worst is None or k / n > worst[1]):
                worst = (name, k / n, n)
        overall = stats["all"]
        metrics = {"flip_rate": overall["flip_rate"], "probability_change": overall["mean_change"],
                   "probability_change_abs": overall["mean_abs_change"], "edited_samples": float(overall["n"])}
        beyond, excess_p = "", None
        if control is not None:
            c_change, c_flips = control
            n, k, nc, kc = len(flips), int(flips.sum()), len(c_flips), int(c_flips.sum())
            low, high = wilson(kc, nc)
            rows.append(["control (neutral swaps)", nc, "", round(kc / nc, 4), f"[{low:.3f}, {high:.3f}]",
                         round(float(c_change.mean()), 4), "", round(float(np.abs(c_change).mean()), 4)])
            p_flips = float(stats_test.fisher_exact([[k, n - k], [kc, nc - kc]], alternative="greater").pvalue)
            p_change = 1.0 if np.ptp(np.concatenate([np.abs(change), np.abs(c_change)])) == 0 else \
                float(stats_test.mannwhitneyu(np.abs(change), np.abs(c_change), alternative="greater").pvalue)
            excess_p = min(1.0, 2 * min(p_flips, p_change))
            metrics.update({"control_flip_rate": kc / nc, "control_probability_change_abs": float(np.abs(c_change).mean()),
                            "control_edited_samples": float(nc), "protected_excess_p": excess_p})
            stats["control"] = {"n": nc, "flips": kc, "flip_rate": kc / nc,
                                "mean_abs_change": float(np.abs(c_change).mean()), "excess_p": excess_p}
            beyond = (f"; neutral one-word swaps (film↔movie, shop↔store...) flip {kc / nc:.1%} of {nc} and move it by "
                      f"{float(np.abs(c_change).mean()):.3f}, so the protected edit moves predictions beyond a model's "
                      f"fragility to any edit (one-sided tests, p = {excess_p:.2g})")
        findings = []
        flagged = overall["flip_rate"] > p.flip_threshold or overall["mean_abs_change"] > p.probability_threshold \
            or worst is not None
        if flagged and (excess_p is None or excess_p < p.alpha):
            where = f"; in class {worst[0]} {worst[1]:.0%} of {worst[2]}" if worst is not None and worst[1] > 0 else ""
            findings.append(Finding(
                id="trust.protected_feature", severity=Severity.WARN,
                message=(f"The model relies on a protected feature: the counterfactual edit flips "
                         f"{overall['flip_rate']:.1%} of {overall['n']} edited predictions{where}, and moves the "
                         f"target's probability by {overall['mean_abs_change']:.3f} on average (thresholds: "
                         f"{p.flip_threshold:.0%} flips, {p.probability_threshold:.2f} probability){beyond}."),
                evidence={"flip_rate": round(overall["flip_rate"], 4), "edited": overall["n"],
                          "mean_abs_change": round(overall["mean_abs_change"], 4),
                          "worst_class": worst[0] if worst else None,
                          **({"control_flip_rate": round(stats["control"]["flip_rate"], 4),
                              "excess_p": round(excess_p, 6)} if excess_p is not None else {})}))
        elif flagged:
            stats["fragile"] = True  # over the thresholds, but no more than neutral edits: not reliance
        return metrics, rows, findings, stats

    def _intact(self, indices: list[int]) -> torch.Tensor:
        """The intact model's class probabilities for audit samples: the shared capture's, no second pass."""
        return torch.softmax(self.ctx.capture.scores[indices].float(), dim=1)

    def _forward_texts(self, texts: list[str]) -> torch.Tensor:
        out = []
        bs = self.ctx.config.batch_size
        with torch.no_grad():
            for start in range(0, len(texts), bs):
                batch = self.subject.adapter.encode_texts(texts[start:start + bs])
                out.append(torch.softmax(self.subject.adapter.forward(self.subject.model, batch).float(), dim=1))
        return torch.cat(out) if out else torch.zeros(0, 0)

    def _protected_words(self) -> dict[str, Any]:
        p = self.p
        pairs = list(p.word_pairs) if p.word_pairs is not None else default_word_pairs()
        swapper = WordSwapper(pairs)
        protected = frozenset(w.lower() for w in (p.protected_words if p.protected_words is not None
                                                  else swapper.words))
        texts = self.subject.data.texts or []
        metrics: dict[str, float] = {}
        findings: list[Finding] = []
        details: dict[str, Any] = {"pairs": len(pairs), "protected_words": len(protected)}
        share = self._word_share(protected, texts)
        edited = [(i, swapper.swap(t)) for i, t in enumerate(texts)]
        edited = [(i, s) for i, s in edited if s != texts[i]]
        parts = []
        table = None
        if edited:
            indices = [i for i, _ in edited]
            before, after = self._intact(indices), self._forward_texts([s for _, s in edited])
            control = self._control_edits(texts)
            m, rows, findings, stats = self._edit_effects(indices, before, after, share, control)
            metrics.update(m)
            details["swaps"] = stats
            details["examples"] = [{"index": i, "text": texts[i], "swapped": s} for i, s in edited[:3]]
            parts.append(f"{len(edited)} samples contained a word of the {len(pairs)} swap pairs; swapped, "
                         f"{stats['all']['flip_rate']:.1%} of their predictions flip")
            if "control" in stats:
                c = stats["control"]
                parts.append(f"neutral swaps (film↔movie, shop↔store...) flip {c['flip_rate']:.1%} of {c['n']} "
                             + ("as a control: the protected edit moves predictions no more than any one-word edit "
                                "does (fragility, not reliance)" if stats.get("fragile") else "as a control"))
            else:
                parts.append("no sample holds a word of the neutral control pairs, so the flips are not compared "
                             "with a control")
            table = _protected_table(
                "Protected words: attribution share and counterfactual swaps", "swapped samples", rows,
                "Words swapped both ways (he↔she, his↔her, names of different groups...). Flip: the predicted class "
                "changes. Δ: probability of the sample's target class after the swap minus before. Share: "
                "|attribution| on the protected words over all words (Integrated Gradients). The control row: "
                "neutral words swapped the same way (film↔movie, shop↔store...), what any one-word edit does.")
        else:
            parts.append(f"no sample contains a word of the {len(pairs)} swap pairs, so there was nothing to swap")
        if share is not None:
            metrics["protected_share"] = share["all"]
            details["share"] = share
            parts.append(f"protected words take {share['all']:.1%} of the attribution in the samples that have them")
        return {"metrics": metrics, "findings": findings, "details": details, "table": table,
                "summary": "; ".join(parts) + "."}

    def _control_edits(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray] | None:
        """The target-probability changes and flips of the neutral control swaps (None: nothing to swap)."""
        pairs = list(self.p.control_pairs) if self.p.control_pairs is not None else \
            default_word_pairs("control_pairs.txt")
        if not pairs:
            return None
        swapper = WordSwapper(pairs)
        edited = [(i, s) for i, t in enumerate(texts) if (s := swapper.swap(t)) != t]
        if not edited:
            return None
        indices = [i for i, _ in edited]
        return self._changes(indices, self._intact(indices), self._forward_texts([s for _, s in edited]))

    def _word_share(self, protected: frozenset[str], texts: Sequence[str]) -> dict[str, float] | None:
        if not protected or not texts:
            return None
        pattern = word_pattern(protected)
        assert pattern is not None
        having = [i for i, t in enumerate(texts) if pattern.search(t)][:self.p.share_samples]
        if not having:
            return None
        method = "integrated_gradients" if "integrated_gradients" in self.methods else next(iter(self.methods))
        tokenizer = self.subject.loaded.tokenizer
        shares: dict[int, list[float]] = defaultdict(list)
        bs = self.ctx.config.batch_size
        for start in range(0, len(having), bs):
            chunk = having[start:start + bs]
            inputs = self.subject.encode_samples(chunk)
            maps = self._explain(method, self.subject.model, inputs, self.targets[chunk]).abs()
            content = self._content(inputs)
            for row, i in enumerate(chunk):
                enc = tokenizer(texts[i], truncation=True, max_length=self.subject.adapter.spec.max_length,
                                return_offsets_mapping=True)
                hits = set()
                for position, (a, b) in enumerate(enc["offset_mapping"]):
                    if b > a:
                        for match in pattern.finditer(texts[i]):
                            if a < match.end() and b > match.start():
                                hits.add(position)
                where = content[row].tolist()
                total = float(maps[row].flatten()[where].sum())
                if total > 0:
                    shares[int(self.targets[i])].append(
                        float(maps[row].flatten()[[q for q in where if q in hits]].sum()) / total)
        if not shares:
            return None
        out = {self._class_name(c): float(np.mean(v)) for c, v in shares.items()}
        out["all"] = float(np.mean([s for v in shares.values() for s in v]))
        return out

    def _protected_region(self, picked: list[int], inputs: dict[str, torch.Tensor],
                          originals: dict[str, torch.Tensor]) -> dict[str, Any]:
        p = self.p
        assert p.region is not None
        key = self.setup.key
        x0 = inputs[key]
        mask = region_mask(x0.shape, p.region, p.region_size, p.region_box)
        method = "integrated_gradients" if "integrated_gradients" in self.methods else next(iter(self.methods))
        maps = originals[method].abs()
        totals = maps.flatten(1).sum(dim=1)
        share_per = (maps[:, mask].sum(dim=1) / totals.clamp_min(1e-30)).numpy()
        metrics: dict[str, float] = {"protected_share": float(share_per.mean())}
        share: dict[str, float] = {"all": float(share_per.mean())}
        for c in sorted(set(self.targets[picked].tolist())):
            sel = (self.targets[picked] == c).numpy()
            share[self._class_name(c)] = float(share_per[sel].mean())
        after = []
        model = self.subject.model
        with torch.no_grad():
            for batch in self.subject.batches(self.ctx.config.batch_size):
                x = batch.inputs[key]
                fill = blur(x) if p.region_fill == "blur" else self._baseline(x)
                edited = dict(batch.inputs, **{key: torch.where(mask.to(x.device).expand_as(x), fill, x)})
                after.append(torch.softmax(self.subject.adapter.forward(model, edited).float(), dim=1))
        indices = list(range(len(self.subject)))
        m, rows, findings, stats = self._edit_effects(indices, self._intact(indices), torch.cat(after).cpu(), share)
        metrics.update(m)
        where = p.region if p.region != "box" else f"box {list(p.region_box or ())}"
        table = _protected_table(
            f"Protected region ({where}): attribution share and replacement", "edited samples", rows,
            f"The region ({int(mask.sum())} of {mask.numel()} pixels) replaced by "
            f"{'a blurred copy' if p.region_fill == 'blur' else 'the baseline'} in every sample. Share: |Integrated "
            "Gradients| inside the region over the whole map, on the sanity samples.")
        return {"metrics": metrics, "findings": findings, "table": table,
                "details": {"region": where, "pixels": int(mask.sum()), "share": share, "edits": stats},
                "summary": f"replacing the {where} region flips {stats['all']['flip_rate']:.1%} of predictions, and "
                           f"it takes {share['all']:.1%} of the attribution."}



def _protected_table(title: str, counted: str, rows: list[list[Any]], caption: str) -> Table:
    """The protected-feature table (words or a region): one row overall, then one per class."""
    return Table(id="trust.protected", title=title,
                 columns=["class", counted, "attribution share", "flip rate", "95% interval",
                          "mean Δ target probability", "95% interval", "mean |Δ|"], rows=rows,
                 caption=caption + " Intervals: Wilson (flips), bootstrap (Δ).")


__all__ = ["Trust", "TrustParams"]
