"""Images: inputs optimized to excite each unit, their galleries beside the top examples, and feature maps."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from auditor.engine.analysis import AuditContext
import auditor.analyses.features.gallery as gallery
from auditor.analyses.features.base import RunBase
from auditor.analyses.features.optim import InputRange, OptimSettings, maximize
from auditor.analyses.features.params import UnitView
from auditor.analyses.features.units import Objective, centre_position, output_of, run_to, unit_values, unit_view
from auditor.schema.report import Figure


class ImageRun(RunBase):
    def _sample_inputs(self) -> torch.Tensor:
        return torch.cat([b.inputs[self.key].detach().float().cpu() for b in self.subject.batches(self.ctx.config.batch_size)])

    def _input_range(self) -> InputRange:
        processor = self.subject.loaded.image_processor
        mean, std = getattr(processor, "image_mean", None), getattr(processor, "image_std", None)
        if processor is not None and mean is not None and std is not None and getattr(processor, "do_normalize", True):
            return InputRange.from_normalization(list(mean), list(std))
        return InputRange.from_samples(self._sample_inputs())


    def _objective(self, name: str, units: torch.Tensor, kind: Objective
                   ) -> Callable[[torch.Tensor], torch.Tensor]:
        module, call = self._module(name)

        def objective(x: torch.Tensor) -> torch.Tensor:
            out = run_to(module, lambda: self._forward({self.key: x}), call=call)
            return unit_values(out, module, units, kind)
        return objective

    def _optimize(self, name: str, views: list[UnitView], rng: InputRange) -> torch.Tensor:
        """Optimizes one input per unit, all units of the module in one batch; records what they reach."""
        sample = self._inputs([0])[self.key]
        units = torch.tensor([v.unit for v in views])
        spatial = len(self._map_shape(name)) > 0
        kind: Objective = self.p.objective if spatial else "channel"
        scale = torch.tensor([v.real_objective if math.isfinite(v.real_objective) and v.real_objective > 0 else 1.0
                              for v in views])
        settings = OptimSettings(steps=self.p.steps, learning_rate=self.p.learning_rate, transforms=self.p.transforms,
                                 decorrelate=self.p.decorrelate, tv_weight=self.p.tv_weight,
                                 l2_weight=self.p.l2_weight, seed=self.ctx.config.seed)
        images = maximize(self._objective(name, units, kind), len(views), tuple(sample.shape[1:]), rng,
                          scale=scale, settings=settings)
        generator = torch.Generator().manual_seed(self.ctx.config.seed)
        shape = (1, -1, *([1] * (images.dim() - 2)))
        noise = rng.low.view(shape) + (rng.high - rng.low).view(shape) * torch.rand(images.shape, generator=generator)
        with torch.no_grad():
            reached = self._objective(name, units, "peak")(images)
            objective = self._objective(name, units, kind)(images)
            random = self._objective(name, units, "peak")(noise)
        for v, r, o, z in zip(views, reached, objective, random, strict=True):
            v.optimized, v.optimized_objective, v.random = float(r), float(o), float(z)
        return images

    def _map_shape(self, name: str) -> tuple[int, ...]:
        shape = self.ctx.capture.records[name].shape
        if not shape or len(shape) < 4:
            return ()
        spatial = [s for s in shape[2:] if s]
        return tuple(spatial) if len(spatial) == len(shape) - 2 else ()

    def _patch_box(self, name: str, position: int, image: tuple[int, int]) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of the input a conv unit at `position` sees: its receptive field."""
        grid = self._map_shape(name)
        if len(grid) != 2:
            return 0, 0, image[0], image[1]
        half = self._receptive_half(name)
        row, col = divmod(position, grid[1])
        cy, cx = (row + 0.5) * image[0] / grid[0], (col + 0.5) * image[1] / grid[1]
        top, left = max(0, math.floor(cy - half[0])), max(0, math.floor(cx - half[1]))
        return top, left, min(image[0], math.ceil(cy + half[0])), min(image[1], math.ceil(cx + half[1]))

    def _receptive_half(self, name: str) -> tuple[float, float]:
        """Half the height and width of a conv module's receptive field, from the gradient of its centre
        position on a few samples (the input pixels that reach it)."""
        if name in self._receptive:
            return self._receptive[name]
        module, call = self._module(name)
        x = self._inputs(list(range(min(8, len(self.subject)))))[self.key].detach().requires_grad_()
        with torch.enable_grad(), output_of(module, call=call) as kept:
            self._forward({self.key: x})
            view, spatial = unit_view(kept["out"], module)
            centre = view[:, centre_position(spatial)].sum()
            (grad,) = torch.autograd.grad(centre, [x], allow_unused=True)
        if grad is None or not bool(grad.abs().sum() > 0):
            half = (x.shape[2] / 2, x.shape[3] / 2)
        else:
            reach = grad.abs().sum(dim=(0, 1)) > 0
            rows, cols = torch.nonzero(reach.any(dim=1)).flatten(), torch.nonzero(reach.any(dim=0)).flatten()
            half = ((int(rows.max()) - int(rows.min()) + 1) / 2, (int(cols.max()) - int(cols.min()) + 1) / 2)
        self._receptive[name] = half
        return half

    def _gallery(self, name: str, views: list[UnitView], images: torch.Tensor, rng: InputRange) -> Figure:
        indices = sorted({s for v in views for s, _, _ in v.by_activation} | {s for v in views for s, _ in v.by_relevance})
        inputs = dict(zip(indices, self._inputs(indices)[self.key].float().cpu(), strict=True)) if indices else {}
        relevance_positions: dict[tuple[int, int], int] = {}
        spatial = bool(self._map_shape(name))
        if spatial:
            rel_samples = sorted({s for v in views for s, _ in v.by_relevance})
            if rel_samples:
                maps = self._maps(name, rel_samples)
                for v in views:
                    for s, _ in v.by_relevance:
                        relevance_positions[(v.unit, s)] = int(maps[rel_samples.index(s), :, v.unit].argmax())
        rows = []
        for v, image in zip(views, images, strict=True):
            size = tuple(image.shape[-2:])
            act = [(gallery.crop(inputs[s], self._patch_box(name, pos, size)) if spatial else inputs[s], f"{a:.3g}")
                   for s, a, pos in v.by_activation]
            rel = [(gallery.crop(inputs[s], self._patch_box(name, relevance_positions[(v.unit, s)], size))
                    if spatial else inputs[s], f"{r:.3g}") for s, r in v.by_relevance]
            rows.append(gallery.Row(label=self._unit_label(name, v.unit), optimized=image,
                                    note=f"{v.optimized_objective:.3g} (real {v.real_objective:.3g})", by_activation=act,
                                    by_relevance=rel))
        return gallery.unit_gallery(name, rows, low=rng.low, high=rng.high, examples=self.p.examples,
                                    patches=spatial, objective=self.p.objective if spatial else "unit")

    def _feature_maps(self, names: list[str], rng: InputRange) -> list[Figure]:
        conv = [n for n in names if len(self._map_shape(n)) == 2]
        if not conv:
            return []
        samples = _one_per_class(self.ctx, self.p.feature_map_samples)
        x = self._inputs(samples)[self.key].float().cpu()
        figures = []
        for name in conv:
            maps = self._maps(name, samples)  # (samples, positions, channels)
            grid = self._map_shape(name)
            channels = torch.argsort(maps.mean(dim=(0, 1)), descending=True)[:self.p.feature_map_channels].tolist()
            per = maps[:, :, channels].reshape(len(samples), *grid, len(channels)).permute(0, 3, 1, 2)
            labels = [self._sample_label(i) for i in samples]
            figures.append(gallery.feature_maps(name, x, per, channels, labels, low=rng.low, high=rng.high))
        return figures

    def _sample_label(self, index: int) -> str:
        names = self.subject.class_names
        if self.subject.labels is not None:
            c = int(self.subject.labels[index])
            return f"#{index} ({names[c] if c < len(names) else c})"
        return f"#{index}"



def _one_per_class(ctx: AuditContext, count: int) -> list[int]:
    """Up to `count` samples, one per class in class order (the first of each), else the first samples."""
    labels = ctx.subject.labels if ctx.subject.labels is not None else ctx.clean.predictions
    picked: list[int] = []
    for c in sorted(set(labels.tolist())):
        hits = torch.nonzero(labels == c).flatten()
        if len(hits):
            picked.append(int(hits[0]))
        if len(picked) >= count:
            break
    return picked or list(range(min(count, len(ctx.subject))))

