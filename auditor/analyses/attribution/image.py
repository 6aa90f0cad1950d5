"""Input attributions for images and arrays: Captum's methods from a black or data-mean baseline,
Grad-CAM on the last convolutional block or a vision transformer's patch tokens, heat maps per class."""


from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from captum.attr import (GradientShap, LayerAttribution, LayerGradCam,
                         NoiseTunnel, Occlusion, Saliency)
from torch import nn

from auditor.engine.analysis import AuditContext
from auditor.errors import ConfigError
from auditor.kit.captum import Baseline, internal_batch_size
from auditor.kit.figures import new_figure, to_figure
from auditor.schema.report import Figure, Section
from auditor.walk.records import iter_tensors



from auditor.engine.analysis import Analysis
from auditor.analyses.attribution.chunks import ImageChunk, image_chunk, sample_chunks
from auditor.analyses.attribution.common import GRID_COLUMNS, METHOD_TITLES, clip, column_title, convergence, forward_fn, shown_samples, to_map
from auditor.analyses.attribution.params import AttributionParams, Method


class ImageAttribution:
    def __init__(self, params: AttributionParams, ctx: AuditContext) -> None:
        self.p, self.ctx, self.subject = params, ctx, ctx.subject
        first = next(ctx.subject.batches(ctx.config.batch_size))
        self.keys = list(first.inputs)
        self.inputs = ctx.subject.inputs
        self.key = self.inputs.key
        self.forward = forward_fn(self.subject, self.keys)
        self.targets = ctx.targets
        self.baseline = Baseline("mean", self.subject.input_means(ctx.config.batch_size)[self.key]) \
            if params.baseline == "mean" else Baseline("zeros")

    def _inputs(self, indices: Sequence[int]) -> torch.Tensor:
        return self.subject.encode_samples(indices)[self.key]

    def _baseline(self, x: torch.Tensor) -> torch.Tensor:
        return self.baseline.of(self.subject, x)

    def run(self, analysis: Analysis) -> Section:
        p, ctx = self.p, self.ctx
        n = len(self.subject)
        shown = shown_samples(ctx, per_class=p.examples_per_class, misclassified=p.misclassified)
        rng = np.random.default_rng(ctx.config.seed)
        drawn = [int(i) for i in rng.permutation(n)[:p.samples]]
        ig_samples = sorted(dict.fromkeys([*shown, *drawn]))[:max(p.samples, len(shown))]
        internal = internal_batch_size(self.subject, p.memory_budget_mb)
        maps: dict[str, dict[int, torch.Tensor]] = defaultdict(dict)
        chunks = [ImageChunk(tuple(c), self.targets[c], tuple(self.keys), self.key, self.baseline, p.n_steps,
                             internal)
                  for c in sample_chunks(ig_samples, ctx.config.batch_size)]
        deltas, gains = [], []
        for chunk, (attr, delta, gain) in zip(chunks, ctx.executor.map(image_chunk, chunks,
                                                                       description="integrated gradients"),
                                              strict=True):
            deltas.append(delta)
            gains.append(gain)
            for i, a in zip(chunk.samples, attr, strict=True):
                maps["integrated_gradients"][i] = to_map(a)
        metrics, findings = convergence(torch.cat(deltas), torch.cat(gains), p.convergence_tolerance)
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
                    maps[method][i] = to_map(a)
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
                picture = self.inputs.display(images[c])
                grey = picture.ndim == 2
                axes[0, c].imshow(picture, cmap="gray" if grey else None)
                target, predicted = int(self.targets[i]), int(predictions[i])
                label = names[target] if target < len(names) else str(target)
                guess = names[predicted] if 0 <= predicted < len(names) else "?"
                axes[0, c].set_title(f"#{i} {clip(label)}" + ("" if predicted == target else f"\n→ {clip(guess)}"),
                                     fontsize=7, color="#111827" if predicted == target else "#dc2626")
                for r, method in enumerate(methods, start=1):
                    heat = maps[method].get(i)
                    ax = axes[r, c]
                    if heat is None:
                        continue
                    signed = method in ("integrated_gradients", "gradient_shap", "occlusion")
                    # One colour scale per row (method): maps side by side compare in magnitude across samples.
                    bound = max((float(maps[method][j].abs().max()) for j in samples if j in maps[method]),
                                default=0.0) or 1.0
                    ax.imshow(picture, cmap="gray" if grey else None, alpha=0.35)
                    image = ax.imshow((heat / bound).numpy(), cmap="RdBu_r" if signed else "inferno", alpha=0.8,
                                      vmin=-1.0 if signed else 0.0, vmax=1.0)
                    if not bars[r].images and not bars[r].collections:
                        bar = fig.colorbar(image, cax=bars[r])
                        bar.ax.tick_params(labelsize=7)
            for r, method in enumerate(["input", *methods]):
                axes[r, 0].set_ylabel(column_title(method), fontsize=7)
            for ax in axes.flat:
                ax.set_xticks([])
                ax.set_yticks([])
            suffix = f" ({part} of {parts})" if parts > 1 else ""
            return to_figure(fig, id=f"attribution.maps.{part}", title=f"Attribution maps{suffix}",
                             alt="Input images with their attribution heat maps, one column per sample",
                             caption="One column per sample (#index, labelled class; in red, misclassified → "
                                     "predicted). One colour scale per row: each method's maps are scaled to the largest "
                                     "|value| of that row (colour bar: share of it). Signed maps (IG, GradientShap, Occlusion): red raises the target "
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
            bar.ax.tick_params(labelsize=7)
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

