"""The probes section's figures and table: accuracy with its three baselines along depth (one chart per
property), compression (MDL) along depth, and one row per property and probed module."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from auditor.kit.figures import new_figure, to_figure
from auditor.schema.report import Figure, Table

if TYPE_CHECKING:
    from auditor.analyses.probes.results import PropertyResult

_PALETTE = ["#2563eb", "#db2777", "#059669", "#d97706", "#7c3aed", "#0891b2", "#65a30d", "#dc2626"]


def _short(name: str, limit: int) -> str:
    return name if len(name) <= limit else "…" + name[-(limit - 1):]


def axis_labels(names: list[str], head: str | None, limit: int = 26) -> list[str]:
    """Tick labels: the dotted prefix all names share is dropped (`encoder.encoder.layer.3` -> `layer.3`), and the
    head's entry reads as its input."""
    blocks = [n.split(".") for n in names if n != head]
    common = 0
    while len(blocks) > 1 and all(len(p) > common + 1 for p in blocks) and len({p[common] for p in blocks}) == 1:
        common += 1
    # drop the shared prefix, but keep one more level where a label would be a bare index (`layer.3`, not `3`)
    keep = common - 1 if common and any(p[common].isdigit() for p in blocks) else common
    return [f"→ {_short(name, limit - 10)} (input)" if name == head else _short(".".join(name.split(".")[keep:]), limit)
            for name in names]


def _xticks(ax: Any, names: list[str], head: str | None) -> None:
    xs = np.arange(len(names))
    rotate = len(names) > 5
    ax.set_xticks(xs, axis_labels(names, head), rotation=40 if rotate else 0, ha="right" if rotate else "center",
                  fontsize=7)
    ax.set_xlim(-0.5, len(names) - 0.5)


def accuracy_figure(res: PropertyResult, order: list[str], head: str | None) -> Figure | None:
    """Probe accuracy with its interval, beside the permutation, random-network, majority and head-lens lines."""
    names = [n for n in order if n in res.modules]
    if not names:
        return None
    rs = [res.modules[n] for n in names]
    xs = np.arange(len(names))
    acc = np.array([r.accuracy for r in rs])
    with new_figure(7.6, 3.5) as (fig, ax):
        ax.fill_between(xs, [r.low for r in rs], [r.high for r in rs], color="#2563eb", alpha=0.14, lw=0,
                        label="probe, 95% interval")
        ax.plot(xs, acc, marker="o", ms=4, lw=1.8, color="#2563eb", label="probe (trained network)")
        if any(r.random_init is not None for r in rs):
            ax.plot(xs, [r.random_init if r.random_init is not None else np.nan for r in rs], marker="s", ms=3,
                    lw=1.2, ls="--", color="#d97706", label="probe (re-initialized network)")
        ax.plot(xs, [float(np.quantile(r.permuted, 0.95)) for r in rs], lw=1.0, ls=":", color="#6b7280",
                label="shuffled labels, this block (95th pct)")
        ax.axhline(res.threshold, color="#374151", lw=1.0, label="shuffled labels, best block (95th pct)")
        ax.axhline(res.majority, color="#9ca3af", lw=1.0, ls="--", label="majority class")
        lens = [r.head_lens if r.head_lens is not None else np.nan for r in rs]
        if not all(math.isnan(v) for v in lens):
            ax.plot(xs, lens, ls="none", marker="D", ms=5, color="#7c3aed", label="the model's head as a lens")
        _xticks(ax, names, head)
        low = min([res.majority, *[r.low for r in rs], *[v for v in lens if not math.isnan(v)],
                   *[r.random_init for r in rs if r.random_init is not None]])
        ax.set_ylim(max(0.0, low - 0.05), 1.02)
        ax.set_ylabel("accuracy (k-fold)", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", color="#e5e7eb", lw=0.6)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        where = "audit data" if res.probe_set.data is None else res.probe_set.description
        return to_figure(fig, id=f"probes.accuracy.{_slug(res.prop.name)}",
                         title=f"Where {res.prop.name!r} is linearly decodable",
                         alt=f"Line chart of probe accuracy for {res.prop.name} at each probed block, with its "
                             "interval, the shuffled-label, re-initialized-network and majority baselines",
                         caption=f"{res.prop.name} on {where} ({res.samples} samples, {len(res.prop.classes)} "
                                 f"classes, {res.folds}-fold). A block decodes the property only above the dark "
                                 "line: what shuffled labels reach at their best block.")


def mdl_figure(results: list[PropertyResult], order: list[str], head: str | None) -> Figure | None:
    """Compression (uniform code / online code) along depth, trained and re-initialized, per property."""
    shown = [r for r in results if any(m.compression is not None for m in r.modules.values())]
    if not shown:
        return None
    names = [n for n in order if any(n in r.modules for r in shown)]
    xs = np.arange(len(names))
    with new_figure(7.6, 3.4) as (fig, ax):
        for i, res in enumerate(shown):
            colour = _PALETTE[i % len(_PALETTE)]
            trained = [res.modules[n].compression if n in res.modules and res.modules[n].compression is not None
                       else np.nan for n in names]
            ax.plot(xs, trained, marker="o", ms=3.5, lw=1.6, color=colour, label=f"{res.prop.name}")
            random = [_nan(res.modules[n].random_compression) if n in res.modules else math.nan for n in names]
            if not all(math.isnan(v) for v in random):
                ax.plot(xs, random, lw=1.0, ls="--", color=colour, alpha=0.8, label=f"{res.prop.name}, re-initialized")
        ax.axhline(1.0, color="#9ca3af", lw=1.0, ls="--", label="no compression (uniform code)")
        _xticks(ax, names, head)
        ax.set_ylabel("compression (uniform / online code)", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", color="#e5e7eb", lw=0.6)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        return to_figure(fig, id="probes.mdl", title="Description length along depth (MDL)",
                         alt="Line chart of the compression of each property's labels by the online code at each block",
                         caption="How much shorter the online code of the labels is than the uniform code (Voita & "
                                 "Titov, 2020): high where a probe learns the property from few samples, 1 where the "
                                 "representation does not help. Dashed: the re-initialized network.")


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(value, digits)


def results_tables(results: list[PropertyResult], order: list[str], head: str | None) -> list[Table]:
    """One table per property: a row per probed module, its accuracy and the three baselines."""
    tables = []
    for res in results:
        rows: list[list[Any]] = []
        for name in [n for n in order if n in res.modules]:
            r = res.modules[name]
            gain = r.accuracy - r.random_init if r.random_init is not None else None
            rows.append([f"{name} (input)" if name == head else name, _round(r.accuracy),
                         f"{r.low:.3f}–{r.high:.3f}", _round(float(np.quantile(r.permuted, 0.95))),
                         _round(r.random_init), _round(gain), _round(r.mdl_bits, 3), _round(r.compression, 3),
                         _round(r.head_lens)])
        if not rows:
            continue
        tables.append(Table(
            id=f"probes.results.{_slug(res.prop.name)}", title=f"{res.prop.name!r}: probe accuracy and baselines",
            columns=["module", "accuracy", "95% interval", "shuffled (p95)", "re-initialized", "trained − re-init.",
                     "MDL bits/sample", "compression", "head lens"],
            rows=rows,
            caption=f"{res.folds}-fold accuracy of a ridge probe on each block's pooled output (the head's entry is "
                    f"its input), with its Wilson interval; majority class {res.majority:.3f}; a block decodes "
                    f"{res.prop.name!r} only above {res.threshold:.3f} (shuffled labels at their best block). "
                    "Shuffled (p95): the 95th percentile of the same probe on shuffled labels at this block; "
                    "re-initialized: the probe on the same architecture with fresh weights; MDL: the online code "
                    "length of the labels (uniform code: log2 K bits); head lens: the model's own head applied to "
                    "the block, no fitting (where widths match)."))
    return tables


__all__ = ["accuracy_figure", "axis_labels", "mdl_figure", "results_tables"]
