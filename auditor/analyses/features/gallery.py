"""The figures of the feature section: unit galleries, feature maps and attention heads (matplotlib PNGs).

Thumbnails are CELL pixels a side, laid out on one canvas per figure, and a gallery holds one row per
unit shown, so a module's gallery stays under GALLERY_BUDGET_BYTES; the test of the section checks it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from auditor.kit.figures import new_figure, to_figure
from auditor.schema.report import Figure

GALLERY_BUDGET_BYTES = 150_000
"""Largest PNG of one figure of this section; the HTML of a section with five modules stays near 1 MB."""


@dataclass
class Row:
    """One unit of a gallery: its optimized input and its top examples (image, caption)."""

    label: str
    optimized: torch.Tensor
    note: str
    by_activation: list[tuple[torch.Tensor, str]]
    by_relevance: list[tuple[torch.Tensor, str]]


def crop(x: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """The (channels, h, w) patch of an image inside (top, left, bottom, right)."""
    top, left, bottom, right = box
    return x[:, top:max(bottom, top + 1), left:max(right, left + 1)]


def display(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> np.ndarray:
    """An input as an image in [0, 1] on the model's valid range (so brightness compares across pictures)."""
    a = x.detach().float().cpu()
    if a.dim() == 1:  # arrays: a strip
        a = a.view(1, 1, -1)
        lo, hi = low.view(-1)[: a.shape[-1]].view(1, 1, -1), high.view(-1)[: a.shape[-1]].view(1, 1, -1)
        if lo.shape[-1] != a.shape[-1]:
            lo, hi = a.min(), a.max()
    else:
        lo, hi = low.view(-1, 1, 1), high.view(-1, 1, 1)
    out = ((a - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1)
    if out.shape[0] == 3:
        return out.permute(1, 2, 0).numpy()
    return out[0].numpy()


CELL = 56
"""Side of a thumbnail in pixels (about 0.5 inch at the report's 110 dpi)."""
CAPTION = 13
GAP = 18
DPI = 110


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image


def _fit(image: np.ndarray, size: int = CELL) -> np.ndarray:
    """(size, size, 3): nearest-neighbour scaling keeps small inputs' pixels crisp."""
    t = torch.from_numpy(np.ascontiguousarray(_rgb(image))).permute(2, 0, 1)[None].float()
    return F.interpolate(t, size=(size, size), mode="nearest")[0].permute(1, 2, 0).numpy()


@dataclass
class _Canvas:
    """Thumbnails laid out on one image, drawn in one axes: hundreds of axes cost seconds in matplotlib."""

    rows: int
    columns: int
    gaps_after: tuple[int, ...] = ()
    cell: int = CELL
    caption: int = CAPTION

    def __post_init__(self) -> None:
        self.image = np.ones((self.rows * (self.cell + self.caption), self._x(self.columns), 3))
        self.texts: list[tuple[float, float, str, dict[str, Any]]] = []

    def _x(self, column: int) -> int:
        return column * (self.cell + 4) + GAP * sum(1 for g in self.gaps_after if g < column)

    def put(self, row: int, column: int, image: np.ndarray, caption: str = "") -> None:
        y, x = row * (self.cell + self.caption), self._x(column)
        self.image[y:y + self.cell, x:x + self.cell] = _fit(image, self.cell)
        if caption:
            self.texts.append((x + self.cell / 2, y + self.cell + 1, caption, {"ha": "center", "va": "top"}))

    def centre(self, first: int, last: int) -> float:
        return (self._x(first) + self._x(last) + self.cell) / 2

    def draw(self, *, left: float = 0.8, top: float = 0.25, right: float = 0.0) -> tuple[Any, Any]:
        """A figure at DPI holding the canvas at its pixel size, with `left`/`top` inches for labels."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        h, w = self.image.shape[:2]
        fig = plt.figure(figsize=(w / DPI + left + right, h / DPI + top), dpi=DPI)
        total_w, total_h = w / DPI + left + right, h / DPI + top
        ax = fig.add_axes((left / total_w, 0.0, (w / DPI) / total_w, (h / DPI) / total_h))
        ax.imshow(self.image, interpolation="nearest", aspect="equal")
        ax.set_axis_off()
        for x, y, text, kw in self.texts:
            ax.text(x, y, text, **{"fontsize": 6, **kw})
        return fig, ax

    def row_label(self, row: int, text: str) -> None:
        self.texts.append((-6, row * (self.cell + self.caption) + self.cell / 2, text,
                           {"ha": "right", "va": "center"}))

    def title(self, x: float, text: str) -> None:
        self.texts.append((x, -4, text, {"ha": "center", "va": "bottom", "fontsize": 7}))


def _save(fig: Any, **kw: str) -> Figure:
    import matplotlib.pyplot as plt

    try:
        return to_figure(fig, **kw)
    finally:
        plt.close(fig)


def unit_gallery(module: str, rows: Sequence[Row], *, low: torch.Tensor, high: torch.Tensor, examples: int,
                 patches: bool, objective: str) -> Figure:
    """Per unit: the optimized input | its top examples by activation | by relevance."""
    canvas = _Canvas(len(rows), 1 + 2 * examples, gaps_after=(0, examples))
    for r, row in enumerate(rows):
        canvas.put(r, 0, display(row.optimized, low, high), row.note)
        canvas.row_label(r, row.label)
        for k, (image, caption) in enumerate(row.by_activation[:examples]):
            canvas.put(r, 1 + k, display(image, low, high), caption)
        for k, (image, caption) in enumerate(row.by_relevance[:examples]):
            canvas.put(r, 1 + examples + k, display(image, low, high), caption)
    canvas.title(canvas.centre(0, 0), "optimized")
    canvas.title(canvas.centre(1, examples), "top by activation")
    canvas.title(canvas.centre(1 + examples, 2 * examples), "top by relevance")
    fig, _ = canvas.draw()
    what = "patches its receptive field covers around the peak" if patches else "whole samples"
    caption = (f"Each row is one unit of {module}: an input optimized to maximize it ({objective} objective), with "
               f"the activation it reaches and, in brackets, the largest a real sample gave; then the {examples} audit "
               f"samples that activate it most ({what}, with their activation), and the {examples} where it "
               "contributes most to the decision (gradient × activation). Pixels are shown on the model's valid "
               "input range.")
    return _save(fig, id=f"features.gallery.{module}", title=f"Units of {module}",
                 alt=f"Optimized inputs and top examples of the chosen units of {module}", caption=caption)


def feature_maps(module: str, x: torch.Tensor, maps: torch.Tensor, channels: list[int], labels: list[str], *,
                 low: torch.Tensor, high: torch.Tensor) -> Figure:
    """Rows: samples; columns: the input, then its most active channels' maps upsampled over it."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    n, c = maps.shape[0], maps.shape[1]
    up = F.interpolate(maps.float(), size=(CELL, CELL), mode="bilinear", align_corners=False)
    norm = Normalize(vmin=min(0.0, float(up.min())), vmax=float(up.max()) if float(up.max()) > 0 else 1.0)
    cmap = colormaps["inferno"]
    canvas = _Canvas(n, c + 1, gaps_after=(0,), caption=2)
    for i in range(n):
        base = _fit(display(x[i], low, high))
        canvas.put(i, 0, base)
        canvas.row_label(i, labels[i])
        grey = base.mean(axis=2, keepdims=True)
        for j in range(c):
            heat = cmap(norm(up[i, j].numpy()))[..., :3]
            canvas.put(i, j + 1, 0.3 * grey + 0.7 * heat)
    canvas.title(canvas.centre(0, 0), "input")
    for j in range(c):
        canvas.title(canvas.centre(j + 1, j + 1), f"ch {channels[j]}")
    fig, ax = canvas.draw(right=0.8)
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, fraction=0.04, pad=0.02)
    bar.ax.tick_params(labelsize=7)
    bar.set_label("activation", fontsize=7)
    return _save(fig, id=f"features.maps.{module}", title=f"Feature maps of {module}",
                 alt=f"Feature maps of the most active channels of {module} over a few samples",
                 caption=f"The {c} channels of {module} with the largest mean activation on these samples (one per "
                         f"class), their {maps.shape[2]}×{maps.shape[3]} maps upsampled over the input (grey); one "
                         "colour scale for the whole figure.")


def head_stats_figure(layers: list[dict[str, Any]]) -> Figure:
    """Layers × heads: mean attention distance and entropy, side by side."""
    distance = np.array([layer["distance"] for layer in layers], dtype=float)
    entropy = np.array([layer["entropy"] for layer in layers], dtype=float)
    names = [str(layer["module"]).replace(".attention.self", "") for layer in layers]
    heads = distance.shape[1]
    with new_figure(7.5, 0.9 + 0.28 * len(layers)) as (fig, ax):
        ax.remove()
        axes = fig.subplots(1, 2)
        for a, values, title in ((axes[0], distance, "mean attention distance (tokens)"),
                                 (axes[1], entropy, "mean attention entropy (nats)")):
            image = a.imshow(values, cmap="viridis", aspect="auto")
            a.set_title(title, fontsize=8)
            a.set_xticks(range(heads), [str(h) for h in range(heads)], fontsize=7)
            a.set_yticks(range(len(names)), names if a is axes[0] else [""] * len(names), fontsize=7)
            a.set_xlabel("head", fontsize=7)
            bar = fig.colorbar(image, ax=a, fraction=0.05, pad=0.02)
            bar.ax.tick_params(labelsize=7)
        return to_figure(fig, id="features.attention_heads", title="Attention heads: distance and entropy",
                         alt="Heat maps of each head's mean attention distance and entropy per layer",
                         caption="Per layer and head, over the samples read with eager attention: how far (in tokens) "
                                 "a query attends on average, and the entropy of its attention. Low distance: the head "
                                 "looks at neighbours; low entropy: at one token (often [CLS] or [SEP]); high "
                                 "entropy: everywhere.")


def attention_patterns(patterns: dict[str, torch.Tensor], *, k: int, length: int | None,
                       tokens: list[str] | None) -> Figure:
    """Layers × heads grid of one sample's attention matrices (queries down, keys across)."""
    from matplotlib import colormaps

    names = list(patterns)
    heads = next(iter(patterns.values())).shape[0]
    cell = max(24, min(48, 560 // heads))
    canvas = _Canvas(len(names), heads, cell=cell, caption=4)
    cmap = colormaps["Blues"]
    for i, name in enumerate(names):
        a = patterns[name]
        if length is not None:
            a = a[:, :length, :length]
        canvas.row_label(i, name.replace(".attention.self", "").rsplit(".", 1)[-1])
        for h in range(heads):
            canvas.put(i, h, cmap(a[h].clamp(0, 1).numpy())[..., :3])
    for h in range(heads):
        canvas.title(canvas.centre(h, h), str(h))
    fig, _ = canvas.draw(left=0.5)
    shown = " ".join(tokens[: length or len(tokens)]) if tokens else ""
    caption = (f"Sample #{k}: the attention of every head (columns, numbered) of every layer (rows), queries down and "
               "keys across, from 0 (white) to 1 (dark blue)." + (f" Tokens: {shown[:300]}" if shown else ""))
    return _save(fig, id=f"features.attention_patterns.{k}", title=f"Attention patterns of sample #{k}",
                 alt=f"Attention matrices of every head for sample {k}", caption=caption)
