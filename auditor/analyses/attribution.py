"""Input attributions: what in the input drives each decision. Captum's implementations throughout.

- Images (and arrays): Integrated Gradients (Sundararajan et al., 2017) and Saliency (Simonyan et al.,
  2014) by default; GradientShap (Lundberg & Lee, 2017), Occlusion (Zeiler & Fergus, 2014) and SmoothGrad
  (Smilkov et al., 2017, Captum's NoiseTunnel) by config; Grad-CAM (Selvaraju et al., 2017) on the last
  convolutional block. Heat maps over a few samples per class, misclassified ones included.
- Vision transformers: the same pixel methods, and Grad-CAM on the patch tokens of the last encoder
  layer reshaped to the patch grid (written here: Captum's LayerGradCam averages over the last axes of a
  conv map and has no notion of tokens; this is pytorch-grad-cam's `reshape_transform`).
- Text: Layer Integrated Gradients over the embeddings block, from a baseline of pad tokens that keeps
  [CLS]/[SEP]; word pieces merged back into words; each shown sample rendered as its words shaded by
  attribution. Across all the audit data, the words that carry the most attribution toward each class,
  from a two-point form of the same method (Captum's LIG with the trapezoid rule on the baseline and the
  input: the mean of the two gradients times the embedding's distance from the baseline).

Target: the engine's (the labelled class, else the predicted one). IG's convergence delta is kept per
sample; `attribution.ig_not_converged` warns when its median is a large share of |F(x) - F(baseline)|.
Memory: IG runs with an `internal_batch_size` chosen from `memory_budget_mb` and the bytes one sample's
forward and backward keep, measured on one sample, so it never holds n_steps x batch inputs at once.

Cost: IG on `samples` samples (n_steps forwards and backwards each), plus small passes for the shown
examples; for text one more forward and backward over the data for the word ranking.
"""

from __future__ import annotations

import math
import string
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from captum.attr import (GradientShap, IntegratedGradients, LayerAttribution, LayerGradCam,
                         LayerIntegratedGradients, NoiseTunnel, Occlusion, Saliency)
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from auditor.engine.analysis import Analysis, AuditContext, PlanContext
from auditor.errors import ConfigError
from auditor.schema.findings import Finding, Severity
from auditor.kit.captum import internal_batch_size
from auditor.kit.figures import new_figure, to_figure
from auditor.schema.report import Cost, Figure, Section, Table
from auditor.subject import Subject, Task
from auditor.subject.task import log_probabilities
from auditor.walk.recorder import iter_tensors

Method = Literal["integrated_gradients", "saliency", "gradient_shap", "occlusion", "smoothgrad"]
METHOD_TITLES = {"integrated_gradients": "Integrated Gradients", "saliency": "Saliency",
                 "gradient_shap": "GradientShap", "occlusion": "Occlusion", "smoothgrad": "SmoothGrad",
                 "gradcam": "Grad-CAM"}


class AttributionParams(BaseModel):
    """`[analyses.attribution]`. The defaults keep the MiniLM demo's section under a minute on 2 CPU cores."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    methods: tuple[Method, ...] = ("integrated_gradients", "saliency")
    """Image methods; text always uses Layer Integrated Gradients over the embeddings."""
    samples: int = Field(64, ge=1)
    """Samples Integrated Gradients runs on (convergence, per-class maps); a seeded draw plus those shown."""
    n_steps: int = Field(32, ge=2, le=1000)
    examples_per_class: int = Field(2, ge=0, le=20)
    misclassified: int = Field(4, ge=0, le=40)
    """Misclassified samples shown besides the per-class examples."""
    baseline: Literal["zeros", "mean"] = "zeros"
    """Images and arrays: a black (all-zero) input, or the audit data's mean input."""
    gradcam_layers: tuple[str, ...] = ()
    """Modules to run Grad-CAM on (default: the last convolutional block, or a ViT's last layer)."""
    memory_budget_mb: int = Field(512, ge=16)
    """What one Integrated Gradients batch may hold; sets Captum's internal_batch_size."""
    convergence_tolerance: float = Field(0.05, gt=0.0)
    """Warn when IG's median |convergence delta| exceeds this share of the median |F(x) - F(baseline)|."""
    top_words: int = Field(12, ge=1)
    occlusion_window: int = Field(4, ge=1)
    """Side of Occlusion's square window (its stride is half of it)."""
    smoothgrad_samples: int = Field(16, ge=1)
    gradient_shap_samples: int = Field(16, ge=1)


class Attribution(Analysis):
    """Heat maps and token highlights of what in the input drives the decision, with IG's convergence."""

    id: ClassVar[str] = "attribution"
    title: ClassVar[str] = "Input attributions"
    tasks: ClassVar[frozenset[Task]] = frozenset({"classification"})
    params_type: ClassVar[type[BaseModel]] = AttributionParams
    cost_note: ClassVar[str] = ("Integrated Gradients on up to 64 samples (32 forwards and backwards each), "
                                "small passes for the shown examples; text: two more passes for the word ranking")

    def __init__(self, params: AttributionParams | None = None) -> None:
        self.params: AttributionParams = params or AttributionParams()

    def not_applicable(self, ctx: PlanContext) -> str | None:
        reason = super().not_applicable(ctx)
        if reason is None and ctx.subject.modality == "text" and _embeddings(ctx) is None:
            return "the text model has no embeddings module to attribute over"
        return reason

    def cost(self, ctx: PlanContext) -> Cost:
        p, n = self.params, len(ctx.subject)
        ig = min(p.samples, n) * p.n_steps
        shown = min(n, p.examples_per_class * max(len(ctx.subject.class_names), 1) + p.misclassified)
        extra = {"saliency": 1, "gradient_shap": p.gradient_shap_samples, "smoothgrad": p.smoothgrad_samples,
                 "occlusion": 16}
        per_shown = 1 + sum(extra.get(m, 0) for m in p.methods)
        text_rank = 2 * n if ctx.subject.modality == "text" else 0
        samples = ig + shown * per_shown + text_rank
        return Cost(forwards=samples / n, backwards=samples / n,
                    note=f"IG on {min(p.samples, n)} samples × {p.n_steps} steps"
                         + (", a two-point ranking of every sample's words" if text_rank else ""))

    def run(self, ctx: AuditContext) -> Section:
        if ctx.subject.modality == "text":
            return _TextAttribution(self.params, ctx).run(self)
        return _ImageAttribution(self.params, ctx).run(self)


# --- shared pieces --------------------------------------------------------------------------------------

def _embeddings(ctx: PlanContext) -> str | None:
    return next((b.name for b in ctx.blocks if b.kind == "embeddings"), None)


def _forward_fn(subject: Subject, keys: Sequence[str]) -> Callable[..., torch.Tensor]:
    """Positional tensors -> log-probabilities of every class (Captum's `forward_func`)."""
    return subject.adapter.log_probability_fn(subject.model, keys)


def shown_samples(ctx: AuditContext, *, per_class: int, misclassified: int) -> list[int]:
    """A few correctly classified samples per class, then misclassified ones, in data order."""
    targets = ctx.targets
    predictions = ctx.clean.predictions
    correct = (predictions == targets) if ctx.subject.labels is not None else torch.ones_like(targets, dtype=torch.bool)
    picked: list[int] = []
    for c in range(max(len(ctx.subject.class_names), 1)):
        picked += [int(i) for i in torch.nonzero((targets == c) & correct).flatten()[:per_class]]
    if ctx.subject.labels is not None:
        picked += [int(i) for i in torch.nonzero(~correct).flatten()[:misclassified]]
    return sorted(dict.fromkeys(picked))


def _convergence(deltas: torch.Tensor, gains: torch.Tensor, tolerance: float) -> tuple[dict[str, float], list[Finding]]:
    median_delta = float(deltas.abs().median())
    median_gain = float(gains.abs().median())
    ratio = median_delta / median_gain if median_gain > 0 else (0.0 if median_delta == 0 else math.inf)
    metrics = {"ig_convergence_delta": median_delta, "ig_target_gain": median_gain, "ig_relative_delta": ratio}
    findings = []
    if ratio > tolerance:
        findings.append(Finding(
            id="attribution.ig_not_converged", severity=Severity.WARN,
            message=(f"Integrated Gradients did not converge: the median convergence delta {median_delta:.3g} is "
                     f"{ratio:.0%} of the median |F(x) − F(baseline)| {median_gain:.3g} (tolerance {tolerance:.0%}); "
                     "the maps do not add up to the change they explain. Raise n_steps."),
            evidence={"median_delta": median_delta, "median_gain": median_gain, "ratio": ratio,
                      "tolerance": tolerance}))
    return metrics, findings


# --- images and arrays -------------------------------------------------------------------------------------

class _ImageAttribution:
    def __init__(self, params: AttributionParams, ctx: AuditContext) -> None:
        self.p, self.ctx, self.subject = params, ctx, ctx.subject
        first = next(ctx.subject.batches(ctx.config.batch_size))
        self.keys = list(first.inputs)
        self.key = next(k for k, v in first.inputs.items() if v.is_floating_point())
        self.forward = _forward_fn(self.subject, self.keys)
        self.targets = ctx.targets

    def _inputs(self, indices: Sequence[int]) -> torch.Tensor:
        return self.subject.encode_samples(indices)[self.key]

    def _baseline(self, x: torch.Tensor) -> torch.Tensor:
        if self.p.baseline == "mean":
            mean = self.subject.input_means(self.ctx.config.batch_size)[self.key]
            return mean.to(x.device).expand_as(x).contiguous()
        return torch.zeros_like(x)

    def run(self, analysis: Attribution) -> Section:
        p, ctx = self.p, self.ctx
        n = len(self.subject)
        shown = shown_samples(ctx, per_class=p.examples_per_class, misclassified=p.misclassified)
        rng = np.random.default_rng(ctx.config.seed)
        drawn = [int(i) for i in rng.permutation(n)[:p.samples]]
        ig_samples = sorted(dict.fromkeys([*shown, *drawn]))[:max(p.samples, len(shown))]
        internal = internal_batch_size(self.subject, p.memory_budget_mb)
        maps: dict[str, dict[int, torch.Tensor]] = defaultdict(dict)
        deltas, gains = [], []
        ig = IntegratedGradients(self.forward)
        bs = ctx.config.batch_size
        for start in ctx.progress.track(range(0, len(ig_samples), bs), total=math.ceil(len(ig_samples) / bs),
                                        description="integrated gradients"):
            chunk = ig_samples[start:start + bs]
            x = self._inputs(chunk)
            base = self._baseline(x)
            target = self.targets[chunk]
            attr, delta = ig.attribute(x, baselines=base, target=target, n_steps=p.n_steps,
                                       internal_batch_size=internal, return_convergence_delta=True)
            with torch.no_grad():
                gain = self.forward(x).gather(1, target[:, None]) - self.forward(base).gather(1, target[:, None])
            deltas.append(delta.detach().float())
            gains.append(gain.flatten().float())
            for i, a in zip(chunk, attr.detach(), strict=True):
                maps["integrated_gradients"][i] = _to_map(a)
        metrics, findings = _convergence(torch.cat(deltas), torch.cat(gains), p.convergence_tolerance)
        metrics["ig_samples"] = float(len(ig_samples))
        metrics["ig_internal_batch_size"] = float(internal)
        x_shown = self._inputs(shown) if shown else None
        t_shown = self.targets[shown] if shown else None
        if x_shown is not None and t_shown is not None:
            for method in p.methods:
                if method == "integrated_gradients":
                    continue
                result = self._method(method, x_shown, t_shown)
                for i, a in zip(shown, result, strict=True):
                    maps[method][i] = _to_map(a)
            for layer in self._gradcam_layers():
                cams = self._gradcam(layer, x_shown, t_shown)
                for i, cam in zip(shown, cams, strict=True):
                    maps[f"gradcam:{layer}"][i] = cam
        class_maps = self._class_maps(maps["integrated_gradients"]) if self._x_dims() == 4 \
            else self._feature_bars(maps["integrated_gradients"])
        figures = [*self._grids(shown, maps), *([class_maps] if class_maps is not None else [])]
        methods = [METHOD_TITLES[m] for m in p.methods] + [f"Grad-CAM on {k.split(':', 1)[1]}"
                                                           for k in maps if k.startswith("gradcam:")]
        details: dict[str, Any] = {"baseline": p.baseline, "shown_samples": shown, "ig_samples": len(ig_samples),
                                   "class_regions": self._class_regions(maps["integrated_gradients"]),
                                   "methods": methods}
        summary = (f"Integrated Gradients ({p.n_steps} steps, {'black' if p.baseline == 'zeros' else 'data-mean'} "
                   f"baseline) on {len(ig_samples)} samples, internal batches of {internal} rows within "
                   f"{p.memory_budget_mb} MB; maps of {len(shown)} samples"
                   f" ({p.examples_per_class} per class and up to {p.misclassified} misclassified) by "
                   + ", ".join(methods) + ". Target: the "
                   + ("labelled" if ctx.subject.labels is not None else "predicted") + " class.")
        return Section(id=analysis.id, title=analysis.title, summary=summary, metrics=metrics, findings=findings,
                       figures=figures, details=details)

    def _method(self, method: Method, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = self.p
        x = x.detach().requires_grad_()  # Captum warns when it has to set this itself
        result: Any
        if method == "saliency":
            result = Saliency(self.forward).attribute(x, target=target, abs=True)
        elif method == "smoothgrad":
            result = NoiseTunnel(Saliency(self.forward)).attribute(
                x, nt_type="smoothgrad", nt_samples=p.smoothgrad_samples,
                stdevs=float(x.std()) * 0.15, target=target, abs=True)
        elif method == "gradient_shap":
            base = torch.cat([self._baseline(x[:1]), torch.zeros_like(x[:1])])
            result = GradientShap(self.forward).attribute(x, baselines=base, n_samples=p.gradient_shap_samples,
                                                          target=target)
        elif method == "occlusion":
            w = min(p.occlusion_window, *x.shape[2:]) if x.dim() == 4 else min(p.occlusion_window, x.shape[-1])
            stride = max(1, w // 2)
            window = (x.shape[1], w, w) if x.dim() == 4 else (w,)
            strides = (x.shape[1], stride, stride) if x.dim() == 4 else (stride,)
            fill: torch.Tensor | int = self._baseline(x[:1])[0] if self.p.baseline == "mean" else 0
            result = Occlusion(self.forward).attribute(x, sliding_window_shapes=window, strides=strides,
                                                       baselines=fill, target=target)
        else:
            raise ConfigError(f"unknown attribution method {method!r}")
        return torch.as_tensor(result).detach()

    def _gradcam_layers(self) -> list[str]:
        ctx = self.ctx
        if self.p.gradcam_layers:
            unknown = [n for n in self.p.gradcam_layers if n not in ctx.tree]
            if unknown:
                raise ConfigError(f"[analyses.attribution] gradcam_layers names modules the model does not have: {unknown}")
            return list(self.p.gradcam_layers)
        if self._x_dims() != 4:
            return []
        records = ctx.capture.records

        def spatial(name: str) -> bool:
            shape = records[name].shape or []
            return len(shape) in (3, 4) and records[name].calls == ctx.capture.forwards \
                and (len(shape) == 3 or ((shape[2] or 0) > 1 and (shape[3] or 0) > 1))

        blocks = [b.name for b in ctx.blocks if b.kind in ("layer", "stage") and spatial(b.name)]
        if blocks:
            return [max(blocks, key=lambda n: records[n].order or 0)]
        return []

    def _x_dims(self) -> int:
        return len(self.subject.adapter.encode(0, 1)[self.key].shape)

    def _gradcam(self, layer: str, x: torch.Tensor, target: torch.Tensor) -> list[torch.Tensor]:
        module = self.ctx.tree.get(layer)
        shape: list[int | None] = self.ctx.capture.records[layer].shape or []
        if len(shape) == 3:  # (batch, tokens, hidden): a vision transformer's patch tokens
            return token_gradcam(self.forward, module, x, target)
        cam = LayerGradCam(self.forward, module).attribute(x, target=target, relu_attributions=True).detach()
        up = LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="bilinear")
        return [c[0] for c in up]

    def _grids(self, shown: list[int], maps: dict[str, dict[int, torch.Tensor]]) -> list[Figure]:
        """The shown samples, 8 per figure: one column per sample, the input and one row per method."""
        methods = [m for m in maps if any(i in maps[m] for i in shown)]
        if not shown or not methods or self._x_dims() != 4:
            return []
        chunks = [shown[i:i + GRID_COLUMNS] for i in range(0, len(shown), GRID_COLUMNS)]
        return [self._grid(chunk, methods, maps, part=k + 1, parts=len(chunks)) for k, chunk in enumerate(chunks)]

    def _grid(self, samples: list[int], methods: list[str], maps: dict[str, dict[int, torch.Tensor]], *,
              part: int, parts: int) -> Figure:
        images = self._inputs(samples)
        names = self.subject.class_names
        predictions = self.ctx.clean.predictions
        cols = len(samples)
        with new_figure(1.5 + 0.95 * cols, 0.5 + 1.0 * (len(methods) + 1)) as (fig, _):
            fig.clf()
            grid = fig.subplots(len(methods) + 1, cols + 1, squeeze=False,
                                gridspec_kw={"width_ratios": [1.0] * cols + [0.07]})
            axes, bars = grid[:, :cols], grid[:, cols]  # the last column holds each row's colour bar
            bars[0].axis("off")
            for c, i in enumerate(samples):
                picture = _display(images[c])
                grey = picture.ndim == 2
                axes[0, c].imshow(picture, cmap="gray" if grey else None)
                target, predicted = int(self.targets[i]), int(predictions[i])
                label = names[target] if target < len(names) else str(target)
                guess = names[predicted] if 0 <= predicted < len(names) else "?"
                axes[0, c].set_title(f"#{i} {_clip(label)}" + ("" if predicted == target else f"\n→ {_clip(guess)}"),
                                     fontsize=7, color="#111827" if predicted == target else "#dc2626")
                for r, method in enumerate(methods, start=1):
                    heat = maps[method].get(i)
                    ax = axes[r, c]
                    if heat is None:
                        continue
                    signed = method in ("integrated_gradients", "gradient_shap", "occlusion")
                    bound = float(heat.abs().max()) or 1.0
                    ax.imshow(picture, cmap="gray" if grey else None, alpha=0.35)
                    image = ax.imshow((heat / bound).numpy(), cmap="RdBu_r" if signed else "inferno", alpha=0.8,
                                      vmin=-1.0 if signed else 0.0, vmax=1.0)
                    if not bars[r].images and not bars[r].collections:
                        bar = fig.colorbar(image, cax=bars[r])
                        bar.ax.tick_params(labelsize=6)
            for r, method in enumerate(["input", *methods]):
                axes[r, 0].set_ylabel(_column_title(method), fontsize=7)
            for ax in axes.flat:
                ax.set_xticks([])
                ax.set_yticks([])
            suffix = f" ({part} of {parts})" if parts > 1 else ""
            return to_figure(fig, id=f"attribution.maps.{part}", title=f"Attribution maps{suffix}",
                             alt="Input images with their attribution heat maps, one column per sample",
                             caption="One column per sample (#index, labelled class; in red, misclassified → "
                                     "predicted). Each map is scaled to its own largest |value| (colour bar: share "
                                     "of it). Signed maps (IG, GradientShap, Occlusion): red raises the target "
                                     "class's log-probability, blue lowers it; Saliency and Grad-CAM are magnitudes.")

    def _class_maps(self, ig: dict[int, torch.Tensor]) -> Figure | None:
        if not ig or self._x_dims() != 4:
            return None
        by_class = self._by_class(ig)
        classes = sorted(by_class)
        if not classes:
            return None
        names = self.subject.class_names
        cols = min(len(classes), 5)
        rows = math.ceil(len(classes) / cols)
        with new_figure(1.6 * cols + 0.9, 1.7 * rows) as (fig, _):
            fig.clf()
            grid = fig.subplots(rows, cols + 1, squeeze=False, gridspec_kw={"width_ratios": [1.0] * cols + [0.08]})
            axes = grid[:, :cols]
            bound = max(float(by_class[c].max()) for c in classes) or 1.0
            for ax, c in zip(axes.flat, classes, strict=False):
                image = ax.imshow(by_class[c].numpy(), cmap="inferno", vmin=0, vmax=bound)
                ax.set_title(f"{names[c] if c < len(names) else c}", fontsize=8)
            for ax in axes.flat:
                ax.set_xticks([])
                ax.set_yticks([])
            for ax in grid[1:, cols]:
                ax.axis("off")
            bar = fig.colorbar(image, cax=grid[0, cols], label="mean |IG|")
            bar.ax.tick_params(labelsize=6)
            return to_figure(fig, id="attribution.classes", title="Where each class looks",
                             alt="Mean absolute Integrated Gradients map per class",
                             caption="Mean |Integrated Gradients| over the attributed samples of each class, one colour "
                                     "scale for all classes.")

    def _feature_bars(self, ig: dict[int, torch.Tensor]) -> Figure | None:
        """Array inputs: the features with the largest mean |IG|, overall and per class."""
        if not ig or self._x_dims() != 2:
            return None
        overall = torch.stack([v.abs() for v in ig.values()]).mean(dim=0)
        top = overall.argsort(descending=True)[:20].tolist()
        by_class = self._by_class(ig)
        names = self.subject.class_names
        with new_figure(7.5, 1.2 + 0.22 * len(top)) as (fig, ax):
            ys = np.arange(len(top))
            width = 0.8 / max(len(by_class), 1)
            for k, (c, values) in enumerate(sorted(by_class.items())):
                ax.barh(ys + (k - (len(by_class) - 1) / 2) * width, [float(values[f]) for f in top], height=width,
                        label=names[c] if c < len(names) else str(c))
            ax.set_yticks(ys, [f"feature {f}" for f in top], fontsize=7)
            ax.invert_yaxis()
            ax.set_xlabel("mean |Integrated Gradients|", fontsize=8)
            if len(by_class) <= 10:
                ax.legend(fontsize=7, frameon=False, title="class", title_fontsize=7)
            ax.spines[["top", "right"]].set_visible(False)
            return to_figure(fig, id="attribution.features", title="Features that drive each class",
                             alt="Horizontal bars of the mean absolute Integrated Gradients of the top features per class",
                             caption="The 20 input features with the largest mean |Integrated Gradients| over the "
                                     "attributed samples, per labelled class.")

    def _by_class(self, ig: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        groups: dict[int, list[torch.Tensor]] = defaultdict(list)
        for i, heat in ig.items():
            groups[int(self.targets[i])].append(heat.abs())
        return {c: torch.stack(v).mean(dim=0) for c, v in groups.items()}

    def _class_regions(self, ig: dict[int, torch.Tensor]) -> dict[str, Any]:
        """Per class, the mean |IG| on a coarse grid (at most 8 x 8): where the class's evidence lies."""
        out: dict[str, Any] = {}
        names = self.subject.class_names
        for c, heat in self._by_class(ig).items():
            grid = heat[None, None] if heat.dim() == 2 else heat[None, None, :, None]
            size = (min(8, grid.shape[2]), min(8, grid.shape[3]))
            coarse = torch.nn.functional.adaptive_avg_pool2d(grid, size)[0, 0]
            out[names[c] if c < len(names) else str(c)] = [[round(float(v), 6) for v in row] for row in coarse]
        return out


def _to_map(attribution: torch.Tensor) -> torch.Tensor:
    """One sample's attribution as a 2-D map (channels summed) or a 1-D profile for arrays."""
    a = attribution.detach().float()
    return a.sum(dim=0) if a.dim() == 3 else a.reshape(-1)


def _display(x: torch.Tensor) -> np.ndarray:
    """An input tensor as an image: grey (H, W) or RGB (H, W, 3) in [0, 1]."""
    a = x.detach().float()
    if a.dim() == 3 and a.shape[0] in (1, 3):
        a = a[0] if a.shape[0] == 1 else a.permute(1, 2, 0)
    lo, hi = float(a.min()), float(a.max())
    return ((a - lo) / (hi - lo) if hi > lo else torch.zeros_like(a)).numpy()


GRID_COLUMNS = 8
"""Samples per attribution-map figure: wide enough to read on a page, small enough to stay sharp."""


def _clip(text: str, limit: int = 10) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _column_title(method: str) -> str:
    if method.startswith("gradcam:"):
        return "Grad-CAM\n" + _clip(method.split(":", 1)[1].rsplit(".", 1)[-1], 14)
    return METHOD_TITLES.get(method, method)


def token_gradcam(forward: Callable[..., torch.Tensor], module: nn.Module, x: torch.Tensor,
                  target: torch.Tensor) -> list[torch.Tensor]:
    """Grad-CAM on a vision transformer layer's patch tokens, shown on the image grid.

    The layer's output (batch, tokens, hidden) is read as (batch, hidden, grid, grid) after dropping the
    class token (and any other leading tokens the grid does not need), then weighted by the gradient's
    mean over the grid, summed over channels and rectified, as Grad-CAM does for a conv map.
    """
    kept: dict[str, torch.Tensor] = {}

    def keep(m: nn.Module, args: Any, output: Any) -> None:
        t = next(iter_tensors(output))
        t.retain_grad()
        kept["out"] = t

    handle = module.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            scores = forward(x.detach().requires_grad_())  # a graph even when every weight is frozen
            picked = scores.gather(1, target[:, None]).sum()
            grad = torch.autograd.grad(picked, kept["out"])[0]
    finally:
        handle.remove()
    act = kept["out"].detach()
    tokens = act.shape[1]
    side = int(math.isqrt(tokens))
    while side * side > tokens - 1 and side > 1:
        side -= 1
    extra = tokens - side * side
    grid_act = act[:, extra:].transpose(1, 2).reshape(act.shape[0], -1, side, side)
    grid_grad = grad[:, extra:].transpose(1, 2).reshape(act.shape[0], -1, side, side)
    weights = grid_grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * grid_act).sum(dim=1, keepdim=True))
    up = torch.nn.functional.interpolate(cam, size=tuple(x.shape[2:]), mode="bilinear", align_corners=False)
    return [c[0] for c in up]


# --- text ----------------------------------------------------------------------------------------------

class _TextAttribution:
    def __init__(self, params: AttributionParams, ctx: AuditContext) -> None:
        self.p, self.ctx, self.subject = params, ctx, ctx.subject
        first = next(ctx.subject.batches(ctx.config.batch_size))
        self.keys = list(first.inputs)
        self.forward = _forward_fn(self.subject, self.keys)
        name = _embeddings(ctx)
        assert name is not None  # not_applicable
        self.layer_name = name
        self.layer = ctx.tree.get(name)
        self.targets = ctx.targets

    def _attribute(self, indices: Sequence[int], *, n_steps: int, method: str,
                   internal: int | None) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
        inputs = self.subject.encode_samples(indices)
        ids = inputs["input_ids"]
        others = tuple(inputs[k] for k in self.keys if k != "input_ids")
        keys = ["input_ids", *[k for k in self.keys if k != "input_ids"]]
        forward = _forward_fn(self.subject, keys)
        lig = LayerIntegratedGradients(forward, self.layer)
        base = self.subject.adapter.baseline_ids(ids)
        result = lig.attribute(ids, baselines=base, target=self.targets[list(indices)],
                               additional_forward_args=others or None, n_steps=n_steps, method=method,
                               internal_batch_size=internal, return_convergence_delta=method == "gausslegendre")
        attr, delta = result if isinstance(result, tuple) else (result, None)
        per_token = attr.detach().float().sum(dim=-1) * inputs.get("attention_mask", torch.ones_like(ids)).float()
        return per_token, (delta.detach().float() if delta is not None else None), inputs

    def run(self, analysis: Attribution) -> Section:
        p, ctx = self.p, self.ctx
        n = len(self.subject)
        bs = ctx.config.batch_size
        shown = shown_samples(ctx, per_class=p.examples_per_class, misclassified=p.misclassified)
        rng = np.random.default_rng(ctx.config.seed)
        ig_samples = sorted(dict.fromkeys([*shown, *(int(i) for i in rng.permutation(n)[:p.samples])]))
        ig_samples = ig_samples[:max(p.samples, len(shown))]
        internal = internal_batch_size(self.subject, p.memory_budget_mb)
        deltas, gains, scores = [], [], {}
        for start in ctx.progress.track(range(0, len(ig_samples), bs), total=math.ceil(len(ig_samples) / bs),
                                        description="integrated gradients"):
            chunk = ig_samples[start:start + bs]
            per_token, delta, inputs = self._attribute(chunk, n_steps=p.n_steps, method="gausslegendre",
                                                       internal=internal)
            assert delta is not None
            deltas.append(delta)
            gains.append(self._gain(chunk, inputs))
            for i, row in zip(chunk, per_token, strict=True):
                scores[i] = row
        metrics, findings = _convergence(torch.cat(deltas), torch.cat(gains), p.convergence_tolerance)
        metrics["ig_samples"] = float(len(ig_samples))
        metrics["ig_internal_batch_size"] = float(internal)
        texts = [self._sample(i, scores[i]) for i in shown if i in scores]
        ranking = self._word_ranking(bs)
        tables = [self._words_table(ranking)]
        details = {"texts": texts, "words": ranking, "ig_samples": len(ig_samples),
                   "baseline": "pad tokens, [CLS]/[SEP] kept", "layer": self.layer_name}
        summary = (f"Layer Integrated Gradients over {self.layer_name} ({p.n_steps} steps, baseline: pad tokens keeping "
                   f"[CLS]/[SEP]) on {len(ig_samples)} samples, {len(texts)} shown word by word; the words that carry "
                   f"each class, ranked over all {n} samples by its two-point form (trapezoid rule). "
                   "Target: the " + ("labelled" if ctx.subject.labels is not None else "predicted") + " class.")
        return Section(id=analysis.id, title=analysis.title, summary=summary, metrics=metrics, findings=findings,
                       tables=tables, details=details)

    def _gain(self, chunk: Sequence[int], inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        target = self.targets[list(chunk)][:, None]
        base_inputs = dict(inputs, input_ids=self.subject.adapter.baseline_ids(inputs["input_ids"]))
        with torch.no_grad():
            real = log_probabilities(self.subject.adapter.forward(self.subject.model, inputs)).gather(1, target)
            base = log_probabilities(self.subject.adapter.forward(self.subject.model, base_inputs)).gather(1, target)
        return (real - base).flatten().float()

    def _words(self, index: int) -> tuple[list[str], list[list[int]], list[int]]:
        """The sample's words, the token positions of each, and the positions of the special tokens."""
        texts = self.subject.data.texts
        assert texts is not None
        text = texts[index]
        encoding = self.subject.loaded.tokenizer(text, truncation=True, max_length=self.subject.adapter.spec.max_length,
                                                 return_offsets_mapping=True)
        word_ids = encoding.word_ids() if hasattr(encoding, "word_ids") else [None] * len(encoding["input_ids"])
        spans: dict[int, list[int]] = defaultdict(list)
        for position, word in enumerate(word_ids):
            if word is not None:
                spans[word].append(position)
        offsets = encoding["offset_mapping"]
        words: list[str] = []
        positions: list[list[int]] = []
        last_end = -1
        for word in sorted(spans):
            tokens = spans[word]
            start, end = offsets[tokens[0]][0], offsets[tokens[-1]][1]
            if start == last_end and words:  # written together ("aren't", "good."): one word for a reader
                words[-1] += text[start:end]
                positions[-1] += tokens
            else:
                words.append(text[start:end])
                positions.append(list(tokens))
            last_end = end
        return words, positions, [p for p, w in enumerate(word_ids) if w is None]

    def _sample(self, index: int, per_token: torch.Tensor) -> dict[str, Any]:
        words, positions, _ = self._words(index)
        values = [float(per_token[pos].sum()) for pos in positions if max(pos) < len(per_token)]
        names = self.subject.class_names
        target, predicted = int(self.targets[index]), int(self.ctx.clean.predictions[index])
        bound = max((abs(v) for v in values), default=0.0) or 1.0
        return {"index": index, "target": names[target] if target < len(names) else str(target),
                "predicted": names[predicted] if 0 <= predicted < len(names) else "?",
                "correct": predicted == target, "total": round(sum(values), 6),
                "words": [[w, round(v, 6), round(v / bound, 4)] for w, v in zip(words, values, strict=False)]}

    def _word_ranking(self, bs: int) -> dict[str, list[dict[str, Any]]]:
        """Per class: the words with the most attribution toward it over all samples of that class."""
        n = len(self.subject)
        totals: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for start in self.ctx.progress.track(range(0, n, bs), total=math.ceil(n / bs), description="word ranking"):
            chunk = list(range(start, min(start + bs, n)))
            per_token, _, _ = self._attribute(chunk, n_steps=2, method="riemann_trapezoid", internal=None)
            for i, row in zip(chunk, per_token, strict=True):
                words, positions, _ = self._words(i)
                for word, pos in zip(words, positions, strict=True):
                    key = word.lower().strip(string.punctuation + "“”‘’")
                    if key and max(pos) < len(row):
                        totals[int(self.targets[i])][key].append(float(row[pos].sum()))
        names = self.subject.class_names
        out: dict[str, list[dict[str, Any]]] = {}
        for c, by_word in sorted(totals.items()):
            ranked = sorted(by_word.items(), key=lambda kv: -sum(kv[1]))[:self.p.top_words]
            out[names[c] if c < len(names) else str(c)] = [
                {"word": w, "total": round(sum(v), 6), "mean": round(sum(v) / len(v), 6), "count": len(v)}
                for w, v in ranked]
        return out

    def _words_table(self, ranking: dict[str, list[dict[str, Any]]]) -> Table:
        rows = [[cls, rank, item["word"], item["total"], item["mean"], item["count"]]
                for cls, items in ranking.items() for rank, item in enumerate(items, start=1)]
        return Table(id="attribution.words", title="Words that carry each class",
                     columns=["class", "rank", "word", "total attribution", "mean", "occurrences"], rows=rows,
                     caption="Attribution toward the sample's target class, summed over a word's pieces, over every "
                             "sample of the class (two-point Integrated Gradients from the pad baseline). Words are "
                             "lower-cased, without surrounding punctuation.")


__all__ = ["Attribution", "AttributionParams", "shown_samples", "token_gradcam"]
