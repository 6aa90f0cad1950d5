"""The judge analysis's table and figures: the ranked drops with their intervals, a grid of samples from the
intact generator and each ablated one (same noise), the bar chart of drops, and the class histogram shifts."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from auditor.kit.removal import ablated_as, describe_target
from auditor.kit.figures import axis_labels
from auditor.analyses.judge.metrics import Estimate, JudgeRow, Reference
from auditor.kit.figures import new_figure, to_figure
from auditor.schema.report import Figure, Table

if TYPE_CHECKING:
    from auditor.analyses.judge.params import JudgeParams


def class_name(c: int, names: Sequence[str]) -> str:
    return names[c] if c < len(names) else str(c)


def describe(row: JudgeRow) -> str:
    """The row's name in a sentence."""
    return describe_target(row.target)


def _ablated_as(row: JudgeRow) -> str:
    return ablated_as(row.target)


def _r(value: float | None, digits: int = 3) -> float | None:
    return round(value, digits) if value is not None and math.isfinite(value) else None


def _value(e: Estimate | None, scale: float = 1.0, digits: int = 3) -> float | None:
    return _r(e.value * scale, digits) if e is not None else None


def _vanishing(row: JudgeRow, ref: Reference, names: Sequence[str], threshold: float) -> str | None:
    """The class whose share falls most (relatively), with its relative drop; "k of n classes" when several
    lose at least `threshold` of their share (the samples collapsed onto a few classes)."""
    if not row.class_drops:
        return None
    relative = {c: row.relative_class_drop(c, ref) for c in row.class_drops}
    lost = [c for c, drop in relative.items() if drop >= threshold]
    if len(lost) > 1:
        return f"{len(lost)} of {len(relative)} classes"
    c = max(relative, key=lambda k: relative[k])
    return f"{class_name(c, names)} ({-relative[c] * 100:.0f}%)" if relative[c] > 0 else None


def rank(rows: Sequence[JudgeRow]) -> list[JudgeRow]:
    """Largest realness drop first; ties by class shift, then by how far the samples moved."""
    def key(r: JudgeRow) -> tuple[float, float, float]:
        shift = r.class_shift.value if r.class_shift is not None else 0.0
        return -r.realness_drop.value, -shift, -r.sample_change
    return sorted(rows, key=key)


def tables(ref: Reference, rows: Sequence[JudgeRow], names: Sequence[str], p: JudgeParams) -> list[Table]:
    modules = rank([r for r in rows if r.target.kind in ("block", "module")])
    units = [r for r in rows if r.target.kind == "unit"]
    classifier = ref.verdicts.probabilities is not None
    conditional = classifier and ref.conditions is not None
    out = []
    if modules:
        columns = ["rank", "module", "ablated", "realness", "drop", "low", "high"]
        if classifier:
            columns += ["conf. drop (pts)", "class shift (%)", "vanishing"]
            if conditional:
                columns.append("asked drop (pts)")
        columns += ["diversity (%)", "moved"]
        body: list[list[Any]] = []
        for i, r in enumerate(modules, start=1):
            cells: list[Any] = [i, r.target.name, _ablated_as(r), _r(r.realness), _value(r.realness_drop),
                                _r(r.realness_drop.low), _r(r.realness_drop.high)]
            if classifier:
                cells += [_value(r.confidence_drop, 100, 1), _value(r.class_shift, 100, 1),
                          _vanishing(r, ref, names, p.class_drop)]
                if conditional:
                    cells.append(_value(r.condition_drop, 100, 1))
            cells += [_value(r.diversity_change, 100, 1), _r(r.sample_change, 3)]
            body.append(cells)
        caption = (f"Each module's output replaced alone ('ablated': by what; residual blocks by their branches), the "
                   f"generator fed the same noise. realness: the discriminator's mean realness of the ablated samples "
                   f"(intact: {ref.realness:.3f}); drop, low/high: its drop and the {p.confidence:.0%} interval over "
                   f"{len(ref.groups)} noise batches. ")
        if classifier:
            caption += ("conf. drop: points of the classifier's mean top-class probability lost; class shift: the % of "
                        "samples whose class would have to change to restore the intact class histogram (total "
                        "variation); vanishing: the class whose share falls most, relatively (or how many classes lose "
                        f"at least {p.class_drop:.0%} of theirs). ")
            if conditional:
                caption += (f"asked drop: points lost of the samples the classifier sees as the class they asked for "
                            f"(intact: {ref.condition_accuracy * 100:.1f}%). ")
        caption += (f"diversity: % change of the mean pairwise distance in {ref.verdicts.features_from}; moved: mean "
                    "distance of each ablated sample from its intact twin, over the intact samples' mean distance from "
                    "their average (1: as far as a typical sample is from the average).")
        out.append(Table(id="judge.ranked", title="Generator modules ranked by the realness their ablation costs",
                         columns=columns, rows=body, caption=caption))
    if units:
        def shift(r: JudgeRow) -> float:
            return r.class_shift.value if r.class_shift is not None else r.realness_drop.value
        layers = list(dict.fromkeys(r.target.module for r in units))
        body = []
        for layer in layers:
            for r in sorted((u for u in units if u.target.module == layer), key=lambda u: -shift(u))[:8]:
                body.append([layer, r.target.index, _value(r.realness_drop),
                             *([_value(r.class_shift, 100, 1), _vanishing(r, ref, names, p.class_drop)]
                               if classifier else []),
                             _value(r.diversity_change, 100, 1)])
        out.append(Table(id="judge.units", title="Units whose ablation moves the samples most",
                         columns=["layer", "unit", "realness drop", *(["class shift (%)", "vanishing"] if classifier else []),
                                  "diversity (%)"], rows=body,
                         caption="Per unit layer, the 8 units (channels) whose ablation alone moves the class histogram "
                                 "most (without a classifier: the realness). module_metrics hold every unit, as "
                                 "`<layer>#<unit>`."))
    return out


def figures(ref: Reference, rows: Sequence[JudgeRow], samples_of: Mapping[str, torch.Tensor],
            shape: tuple[int, ...], names: Sequence[str], p: JudgeParams) -> list[Figure]:
    return [f for f in (_grid(ref, rows, samples_of, shape, names, p), _drops(ref, rows, p),
                        _classes(ref, rows, names)) if f is not None]


def _as_images(samples: torch.Tensor, shape: tuple[int, ...]) -> np.ndarray | None:
    """(n, H, W) or (n, H, W, 3) arrays to show, or None when the samples are not images."""
    x = samples.reshape(-1, *shape).double().numpy()
    if x.ndim == 3:
        return x
    if x.ndim == 4 and x.shape[1] == 1:
        return x[:, 0]
    if x.ndim == 4 and x.shape[1] == 3:
        return x.transpose(0, 2, 3, 1)
    return None


def _grid(ref: Reference, rows: Sequence[JudgeRow], samples_of: Mapping[str, torch.Tensor], shape: tuple[int, ...],
          names: Sequence[str], p: JudgeParams) -> Figure | None:
    n = min(p.grid_columns, len(ref.samples))
    blocks = [r for r in rows if r.target.kind == "block"]  # in the order they run: noise to sample
    others = rank([r for r in rows if r.target.kind != "block"])
    shown = (blocks + others)[:p.grid_rows - 1]
    intact = _as_images(ref.samples[:n], shape)
    if intact is None or not shown:
        return None
    lo, hi = np.percentile(intact, [0.5, 99.5])
    if hi <= lo:
        hi = lo + 1.0
    grey = intact.ndim == 3
    grids = [("intact", intact)] + [(r.target.name, _as_images(samples_of[r.target.name][:n], shape)) for r in shown]
    cell = 0.62
    with new_figure(1.9 + cell * n, 0.5 + cell * len(grids)) as (fig, _):
        fig.clf()
        axes = fig.subplots(len(grids), n, squeeze=False, gridspec_kw={"wspace": 0.05, "hspace": 0.08})
        labels = axis_labels([name for name, _ in grids], 28)
        for i, ((_, images), label) in enumerate(zip(grids, labels, strict=True)):
            assert images is not None
            for j in range(n):
                ax = axes[i][j]
                image = np.clip((images[j] - lo) / (hi - lo), 0.0, 1.0)
                ax.imshow(image, cmap="gray_r" if grey else None, vmin=0, vmax=1, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(i == 0)
                    spine.set_color("#2563eb")
                if i == 0 and ref.conditions is not None:
                    ax.set_title(class_name(int(ref.conditions[j]), names), fontsize=7, pad=2)
            axes[i][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7,
                                  fontweight="bold" if i == 0 else "normal")
        asked = " (columns: the class each sample asked for)" if ref.conditions is not None else ""
        return to_figure(fig, id="judge.samples", title="Samples of the intact and the ablated generators",
                         alt="A grid of generated images: the first row from the intact generator, each further row "
                             "from the generator with one module ablated, fed the same noise",
                         caption=f"The first {n} noise vectors{asked}, through the intact generator (top, framed) and "
                                 "through the generator with one module ablated per row: its blocks in the order they "
                                 "run, then other modules and units by the realness their ablation costs. Same grey "
                                 "scale in every row.")


def _drops(ref: Reference, rows: Sequence[JudgeRow], p: JudgeParams) -> Figure | None:
    shown = rank([r for r in rows if r.target.kind in ("block", "module")])[:p.top]
    if not shown:
        return None
    classifier = ref.verdicts.probabilities is not None
    labels = axis_labels([r.target.name for r in shown], 34)
    ys = np.arange(len(shown))
    panels: list[tuple[str, list[Estimate], str]] = [
        ("realness drop", [r.realness_drop for r in shown], "#2563eb")]
    if classifier:
        panels.append(("confidence drop", [r.confidence_drop or Estimate(0, 0, 0) for r in shown], "#f59e0b"))
        panels.append(("class shift", [r.class_shift or Estimate(0, 0, 0) for r in shown], "#7c3aed"))
    with new_figure(8.0, 1.3 + 0.24 * len(shown)) as (fig, _):
        fig.clf()
        axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
        for ax, (title, values, colour) in zip(axes, panels, strict=True):
            v = np.array([e.value for e in values])
            err = np.array([[max(e.value - e.low, 0.0) for e in values], [max(e.high - e.value, 0.0) for e in values]])
            ax.barh(ys, v, xerr=err, color=colour, error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "#111827"})
            ax.axvline(0, color="#6b7280", lw=0.8)
            ax.set_xlabel(title, fontsize=8)
            ax.tick_params(axis="x", labelsize=7)
            ax.spines[["top", "right"]].set_visible(False)
        axes[0].set_yticks(ys, labels, fontsize=7)
        axes[0].invert_yaxis()
        return to_figure(fig, id="judge.drops", title="What each module's ablation costs the samples",
                         alt="Horizontal bars per ablated generator module: the drop of the discriminator's realness"
                             + (", of the classifier's confidence, and the class shift" if classifier else ""),
                         caption=f"The {len(shown)} modules whose ablation costs most realness, with "
                                 f"{p.confidence:.0%} intervals over {len(ref.groups)} noise batches. Realness and "
                                 "confidence are probabilities (0–1); class shift is the share of samples that "
                                 "changed class.")


def _classes(ref: Reference, rows: Sequence[JudgeRow], names: Sequence[str]) -> Figure | None:
    hist = ref.histogram
    shown = [r for r in rank(rows) if r.shares is not None][:24]
    if hist is None or len(shown) < 1 or ref.classes < 2:
        return None
    grid = np.array([[(float(r.shares[c]) - float(hist[c])) * 100 for c in range(ref.classes)]  # type: ignore[index]
                     for r in shown])
    labels = axis_labels([r.target.name for r in shown])
    classes = [class_name(c, names) for c in range(ref.classes)]
    bound = max(float(np.abs(grid).max()), 1.0)
    with new_figure(min(8.0, 3.2 + 0.42 * len(classes)), 1.5 + 0.28 * len(shown)) as (fig, ax):
        image = ax.imshow(grid, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
        ax.set_xticks(range(len(classes)), [f"{c}\n{float(hist[i]) * 100:.0f}%" for i, c in enumerate(classes)],
                      fontsize=7)
        ax.set_yticks(range(len(shown)), labels, fontsize=7)
        ax.set_xlabel("class (intact share of the samples)", fontsize=8)
        if grid.size <= 300:
            for (i, j), value in np.ndenumerate(grid):
                if abs(value) >= 2:
                    ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if abs(value) > 0.6 * bound else "#111827")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03, label="share change (points)")
        return to_figure(fig, id="judge.classes", title="Which classes the samples fall into, per ablation",
                         alt="Heat map of ablated modules against classes, coloured by the change of the share of "
                             "samples the classifier assigns to the class",
                         caption="Points of the samples the classifier assigns to each class, ablated minus intact "
                                 "(red: the class loses samples, blue: gains). A row red in one column only: that "
                                 "class vanishes when the module is removed.")


__all__ = ["class_name", "describe", "figures", "rank", "tables"]
