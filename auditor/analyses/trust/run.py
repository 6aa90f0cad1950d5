"""One run of the trust analysis: the sanity cascade, the deletion test and the protected features, as one
section."""


from __future__ import annotations

from typing import Any

import numpy as np
import torch

from auditor.analyses.trust.deletion import DeletionTest
from auditor.schema.findings import Finding
from auditor.kit.figures import new_figure, to_figure
from auditor.schema.report import Figure, Section, Table
from auditor.analyses.trust.explainers import (MULTIPLIES_BY_INPUT, SHORT, TITLES)
from auditor.analyses.trust.randomize import Group, cascade_groups
from auditor.analyses.trust.steps import TRAINED, CascadeStep, explain_step, resolve
from auditor.analyses.trust.similarity import rank_correlation, ssim
from auditor.subject.inputs import TextInputs



from auditor.analyses.trust.base import last_parts
from auditor.analyses.trust.protected import ProtectedChecks
from auditor.analyses.trust.findings import FINDINGS


class TrustRun(ProtectedChecks):
    # --- the run ---------------------------------------------------------------------------------------

    def run(self) -> Section:
        p = self.p
        samples, target = self._pick()
        inputs = self.subject.encode_samples(samples)
        content = self._content(inputs, target)
        order = {name: record.order for name, record in self.ctx.capture.records.items()}
        groups = cascade_groups(self.subject.model, self.ctx.blocks, order)
        maps = self._cascade_maps(inputs, target, groups)
        originals = maps[0]
        metrics: dict[str, float] = {}
        findings: list[Finding] = []
        tables: list[Table] = []
        figures: list[Figure] = []
        module_metrics: dict[str, dict[str, float]] = {}
        sanity = self._sanity(inputs, content, groups, maps, module_metrics)
        metrics.update(sanity["metrics"])
        findings += sanity["findings"]
        tables.append(sanity["table"])
        figures.append(sanity["figure"])
        if sanity.get("maps") is not None:
            figures.append(sanity["maps"])
        if sanity.get("example") is not None:
            tables.append(sanity["example"])
        faithful = DeletionTest(self.ctx, p, baseline=self._baseline,
                                methods=list(self.methods)).run(inputs, target, content, originals)
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
        chosen = "samples (balanced over classes)" if self.subject.head.per_class else \
            ("next-token predictions (per text its most confident correct one and its most wrong one; target: the "
             "log-probability of the real next token)")
        summary = (f"{len(samples)} {chosen} explained by "
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
        if self.inputs.is_text:
            return None
        x = inputs[self.setup.key]
        edge = (x - self._baseline(x)).abs()
        edge = edge.sum(dim=1) if edge.dim() >= 4 else edge
        return float(np.mean([rank_correlation(maps[i].flatten()[w].abs(), edge[i].flatten()[w])
                              for i, w in enumerate(content)]))

    def _cascade_maps(self, inputs: dict[str, torch.Tensor], target: torch.Tensor,
                      groups: list[Group]) -> list[dict[str, torch.Tensor]]:
        """The maps by method of the trained model, then of each cascade step: one independent item per step
        for the executor (here, or spread over a cluster's model replicas; `steps.py`)."""
        items = [CascadeStep(k, tuple(groups), self.ctx.config.seed, self.spec, dict(self.methods), inputs, target)
                 for k in range(TRAINED, len(groups))]
        return resolve(self.ctx.executor.map(explain_step, items, description="randomization cascade"))

    def _sanity(self, inputs: dict[str, torch.Tensor], content: list[torch.Tensor], groups: list[Group],
                maps: list[dict[str, torch.Tensor]], module_metrics: dict[str, dict[str, float]]) -> dict[str, Any]:
        """Similarity of each step's maps (`maps[k + 1]`) to the trained model's (`maps[0]`), per method."""
        p, originals = self.p, maps[0]
        curves: dict[str, list[tuple[float, float]]] = {m: [(1.0, 1.0)] for m in self.methods}
        keep_at = {0, len(groups) // 2, len(groups) - 1}
        kept = {k: maps[k + 1] for k in range(len(groups)) if k in keep_at}
        last = maps[-1] if groups else {}
        for k, group in enumerate(groups):
            for m in self.methods:
                signed, absolute = self._similarities(originals[m], maps[k + 1][m], content)
                curves[m].append((signed, absolute))
                module_metrics.setdefault(group.name, {})[f"sanity_correlation/{m}"] = signed
        metrics: dict[str, float] = {}
        findings: list[Finding] = []
        notes = []
        similarity = self.inputs.map_similarity
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
                findings.append(FINDINGS.finding(
                    "sanity_failed",
                    message=(f"{TITLES.get(m, m)} fails the randomization sanity check: with every weight of the "
                             f"model re-initialized, its maps still correlate {signed:.2f} (signed rank correlation, "
                             f"threshold {p.sanity_threshold:.2f}) with the trained model's. They describe the input "
                             "more than the model; do not read them as evidence of what the model learned."),
                    evidence={"method": m, "signed_correlation": round(signed, 4),
                              "absolute_similarity": round(absolute, 4), "threshold": p.sanity_threshold}))
        labels = ["trained", *[last_parts(g.name) for g in groups]]
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
        if self.inputs.spatial:
            out["maps"] = self._maps_figure(inputs, originals, kept, groups)
        elif self.inputs.is_text:
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
                ax.set_xticks(xs, labels, rotation=60, ha="right", fontsize=7)
                ax.tick_params(axis="y", labelsize=7)
                ax.spines[["top", "right"]].set_visible(False)
            axes[0].axhline(self.p.sanity_threshold, color="#dc2626", lw=0.8, ls="--")
            axes[0].legend(fontsize=7, frameon=False)
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
                    # One colour scale per row: the trained map and its re-initialized versions side by side must
                    # show how much weaker (or stronger) a map got, not each stretched to its own maximum.
                    bound = max(float(heat.abs().max()) for heat in series) or 1.0
                    for c, heat in enumerate(series, start=1):
                        axes[r, c].imshow((heat / bound).numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
                    axes[r, 0].set_ylabel(f"#{i}\n{TITLES.get(m, m)}", fontsize=7)
            titles = ["input", "trained", *[f"to {last_parts(groups[k].name)}" for k in steps]]
            for c, title in enumerate(titles):
                axes[0, c].set_title(title, fontsize=7)
            for ax in axes.flat:
                ax.set_xticks([])
                ax.set_yticks([])
            return to_figure(fig, id="trust.sanity_maps", title="Maps as the model is re-initialized",
                             alt="Attribution maps of two samples for the trained model and after re-initialization steps",
                             caption="Signed maps, one colour scale per row (the largest |value| of the trained map "
                                     "and its re-initialized versions; red raises the target's log-probability, blue "
                                     "lowers it). 'to X': every module from the output down to X "
                                     "re-initialized; the last column is the fully random model.")

    def _text_example(self, inputs: dict[str, torch.Tensor], content: list[torch.Tensor],
                      originals: dict[str, torch.Tensor], last: dict[str, torch.Tensor]) -> Table:
        text_inputs = self.inputs
        assert isinstance(text_inputs, TextInputs)
        ids = inputs[text_inputs.key]
        rows = []
        for i in range(min(3, ids.shape[0])):
            where = content[i]
            tokens = text_inputs.tokens(ids[i][where].tolist())
            text = text_inputs.text_of(tokens)
            for m in self.methods:
                def top(maps: torch.Tensor, i: int = i, where: torch.Tensor = where,
                        tokens: list[str] = tokens) -> str:
                    values = maps[i].flatten()[where]
                    best = values.argsort(descending=True)[:3].tolist()
                    return ", ".join(f"{tokens[b]} ({float(values[b]):+.2g})" for b in best)
                rows.append([text, TITLES.get(m, m), top(originals[m]), top(last[m]) if m in last else ""])
        return Table(id="trust.sanity_text", title="Top tokens before and after full randomization",
                     columns=["sample", "method", "trained model", "fully random model"], rows=rows,
                     caption="The three tokens with the largest signed attribution toward the target (the class, or "
                             "a language model's real next token). A "
                             "trustworthy method's choice changes once the model is destroyed.")

    # --- protected features ----------------------------------------------------------------------------

