"""The trust analysis's faithfulness check: deletion and insertion against random orders, on patches
imputed the ROAD way for images, with the test's power measured on the model itself.

Before any method is called unfaithful, two references run through the same test: occlusion of the same
positions (faithful by construction) and random maps (unfaithful by construction). Only when the first
beats random orders, the second does not and random orders do not collapse the prediction at once does a
method that deletes no faster than random get `trust.unfaithful`; otherwise the section says
`trust.faithfulness_inconclusive`, with the reason in numbers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from auditor.engine.analysis import AuditContext
from auditor.kit.captum import target_probabilities
from auditor.schema.findings import Finding
from auditor.kit.figures import new_figure, to_figure
from auditor.schema.report import Figure, Table
import auditor.analyses.trust.faithfulness as faith
from auditor.analyses.trust.counterfactual import blur
from auditor.analyses.trust.explainers import TITLES
from auditor.analyses.trust.imputation import noisy_linear_impute
from auditor.analyses.trust.findings import FINDINGS

if TYPE_CHECKING:
    from auditor.analyses.trust.params import TrustParams

RANDOM = "\0random"  # the random orders' key: no explainer name can collide with it
OCCLUSION, NOISE = "\0occlusion", "\0noise"  # the two references
REFERENCE_TITLES = {OCCLUSION: "Reference: occlusion (faithful by construction)",
                    NOISE: "Reference: random maps (unfaithful by construction)"}


class DeletionTest:
    """Deletion/insertion curves of the explained samples for every method, the two references and random orders."""

    def __init__(self, ctx: AuditContext, params: TrustParams, *, baseline: Callable[[torch.Tensor], torch.Tensor],
                 methods: Sequence[str]) -> None:
        self.ctx, self.p, self.baseline = ctx, params, baseline
        self.methods = list(methods)
        self.subject = ctx.subject
        self.inputs = ctx.subject.inputs
        self.key = self.inputs.key
        self.first = self.inputs.first[self.key]
        """The attributed input of one sample (its shape decides patches or features)."""
        self.noise_generator = torch.Generator().manual_seed(ctx.config.seed + 2)

    # --- what a sample's positions are and how they are removed ----------------------------------------

    def fill(self, x: torch.Tensor) -> str:
        """What a removed position becomes, in words (and which fill `editable` uses)."""
        return self.inputs.deletion_fill(x, self.p.deletion_fill)

    def patch(self, x: torch.Tensor) -> int | None:
        """Images: the side of the square patches removed together (None: arrays and text)."""
        if x.dim() != 4:
            return None
        return self.p.patch or faith.patch_side(x.shape[2], x.shape[3])

    def editable(self, inputs: dict[str, torch.Tensor], i: int, where: torch.Tensor) -> faith.Editable:
        one = self.inputs.sample(inputs, i)
        key = self.key
        x = one[key]
        fill, side = self.fill(x), self.patch(x)
        if side is None:  # tokens, arrays, and images of more than two spatial dimensions: every value is a position
            return faith.Editable(positions=len(where), build=self.inputs.deletion(one, where, self.baseline),
                                  pool=lambda flat: flat[where])

        def others(rows: int) -> dict[str, torch.Tensor]:
            return {k: v.expand(rows, *v.shape[1:]).clone() for k, v in one.items() if k != key}

        height, width = x.shape[2], x.shape[3]
        ids = faith.patch_ids(height, width, side)
        patches = int(ids.max()) + 1
        anchor = self.baseline(x)[0]
        static = blur(x) if fill == "blur" else self.baseline(x)

        def put(masks: torch.Tensor, *, impute: bool) -> dict[str, torch.Tensor]:
            rows = masks.shape[0]
            pixels = masks[:, ids].reshape(rows, height, width)
            if impute:
                edited = noisy_linear_impute(x[0], pixels, anchor=anchor, noise=self.p.impute_noise,
                                             generator=self.noise_generator).to(x.device)
            else:
                edited = torch.where(pixels[:, None].to(x.device), static.expand_as(x), x.expand(rows, *x.shape[1:]))
            out = {**others(rows), key: edited}
            return {k: out[k] for k in one}
        return faith.Editable(positions=patches, build=lambda masks: put(masks, impute=fill == "impute"),
                              insert=lambda masks: put(masks, impute=False),
                              pool=lambda flat: faith.patch_means(flat, ids, patches))

    # --- the test --------------------------------------------------------------------------------------

    def run(self, inputs: dict[str, torch.Tensor], target: torch.Tensor, content: list[torch.Tensor],
            originals: dict[str, torch.Tensor]) -> dict[str, Any]:
        p = self.p
        model = self.subject.model
        fractions = np.linspace(0.0, 1.0, p.deletion_steps + 1)
        chunk = max(self.ctx.config.batch_size, 64)
        keys = [*self.methods, OCCLUSION, NOISE]
        areas: dict[str, dict[str, list[Any]]] = {m: {"del": [], "ins": []} for m in [*keys, RANDOM]}
        mean_curves: dict[str, list[np.ndarray]] = defaultdict(list)
        ends: list[tuple[float, float]] = []
        generator = torch.Generator().manual_seed(self.ctx.config.seed)
        noise_maps = torch.Generator().manual_seed(self.ctx.config.seed + 1)
        positions = []
        samples = len(content)
        for i in self.ctx.progress.track(range(samples), total=samples, description="deletion/insertion"):
            where = content[i]
            if len(where) == 0:
                continue
            editable = self.editable(inputs, i, where)
            positions.append(editable.positions)
            t = int(target[i])

            def probability(batch: dict[str, torch.Tensor], t: int = t) -> torch.Tensor:
                with torch.no_grad():
                    return target_probabilities(self.subject, self.subject.adapter.forward(model, batch))[:, t]
            orders = [editable.order(originals[m][i].flatten()) for m in self.methods]
            orders.append(faith.occlusion_scores(editable, probability, chunk=chunk)
                          .argsort(descending=True, stable=True))
            orders.append(torch.randperm(editable.positions, generator=noise_maps))
            orders += [torch.randperm(editable.positions, generator=generator) for _ in range(p.random_orders)]
            deletion, insertion = faith.curves(editable, orders, fractions, probability, chunk=chunk)
            ends.append((float(deletion[0, 0]), float(deletion[0, -1])))
            d_area, i_area = faith.area(deletion, fractions), faith.area(insertion, fractions)
            for k, m in enumerate(keys):
                areas[m]["del"].append(d_area[k])
                areas[m]["ins"].append(i_area[k])
                mean_curves[f"{m}:del"].append(deletion[k])
                mean_curves[f"{m}:ins"].append(insertion[k])
            r = len(keys)
            areas[RANDOM]["del"].append(d_area[r:])
            areas[RANDOM]["ins"].append(i_area[r:])
            mean_curves[f"{RANDOM}:del"].append(deletion[r:].mean(axis=0))
            mean_curves[f"{RANDOM}:ins"].append(insertion[r:].mean(axis=0))
        if not areas[RANDOM]["del"]:
            return {"metrics": {}, "findings": [], "figure": self.figure(fractions, {}), "details": {},
                    "summary": "no sample had a position to perturb",
                    "table": Table(id="trust.faithfulness", title="Deletion and insertion", columns=["method"],
                                   rows=[], caption="No sample had a position to perturb.")}
        rand_del, rand_ins = np.stack(areas[RANDOM]["del"]), np.stack(areas[RANDOM]["ins"])
        compared = {m: faith.compare(np.array(areas[m]["del"]), np.array(areas[m]["ins"]), rand_del, rand_ins)
                    for m in keys}
        start, end = (float(v) for v in np.mean(ends, axis=0))
        separation = faith.faster(np.array(areas[OCCLUSION]["del"]), np.array(areas[NOISE]["del"]))
        power = faith.power(compared[OCCLUSION], compared[NOISE], separation, start, end, alpha=p.alpha,
                            collapse_area=p.collapse_area)
        x = self.first
        averaged = {k: np.mean(np.stack(v), axis=0) for k, v in mean_curves.items()}
        out = self._report(compared, power, rand_del, rand_ins, positions)
        out["figure"] = self.figure(fractions, averaged)
        out["details"] = {"positions": int(np.median(positions)), "patch": self.patch(x), "fill": self.fill(x),
                          "conclusive": power.conclusive, "reasons": list(power.reasons),
                          "start_probability": start, "end_probability": end}
        return out

    def _report(self, compared: dict[str, faith.Comparison], power: faith.Power, rand_del: np.ndarray,
                rand_ins: np.ndarray, positions: list[int]) -> dict[str, Any]:
        p = self.p
        metrics = _metrics(compared, power, rand_del, rand_ins, self.methods)
        findings: list[Finding] = []
        rows: list[list[Any]] = []
        for m in [*self.methods, OCCLUSION, NOISE]:
            c = compared[m]
            better = faith.beats_random(c, p.alpha)
            rows.append([REFERENCE_TITLES.get(m) or TITLES.get(m, m), round(c.deletion, 4), round(c.random_deletion, 4),
                         float(f"{c.p_deletion:.3g}"), round(c.insertion, 4), round(c.random_insertion, 4),
                         float(f"{c.p_insertion:.3g}"), _verdict(m, better, power, p.alpha, m in self.methods)])
            if m in self.methods and power.conclusive and not better:
                findings.append(_unfaithful(m, c, power, p.alpha))
        if not power.conclusive:
            findings.append(_inconclusive(power, p.collapse_area))
        what = self._positions_in_words(positions)
        verdict = ("the test has power on this model: occlusion deletes faster than random orders "
                   f"(p = {power.occlusion.p_deletion:.2g}) and random maps do not (p = {power.noise.p_deletion:.2g})"
                   if power.conclusive else "the test is inconclusive on this model: " + "; ".join(power.reasons))
        summary = f"deletion and insertion of {what} in {p.deletion_steps} steps against {p.random_orders} random " \
                  f"orders; {verdict}"
        return {"metrics": metrics, "findings": findings, "table": _table(rows, what, p.random_orders),
                "summary": summary}

    def _positions_in_words(self, positions: list[int]) -> str:
        x = self.first
        fill = {"impute": "filled by ROAD's noisy linear imputation", "blur": "replaced by a blurred copy",
                "baseline": "replaced by the baseline", "pad": "replaced by the pad token"}[self.fill(x)]
        side = self.patch(x)
        units = self.inputs.deletion_units(x, side)
        per_image = f"{int(np.median(positions))} per image, " if side is not None else ""
        return f"{units} ({per_image}{fill})"

    def figure(self, fractions: np.ndarray, curves: dict[str, np.ndarray]) -> Figure:
        x = self.first
        unit = self.inputs.deletion_units(x, self.patch(x), short=True)
        with new_figure(7.5, 2.8) as (fig, _):
            fig.clf()
            axes = fig.subplots(1, 2, sharey=True)
            for ax, mode, title in ((axes[0], "del", "deletion"), (axes[1], "ins", "insertion")):
                for m in self.methods:
                    if f"{m}:{mode}" in curves:
                        ax.plot(fractions, curves[f"{m}:{mode}"], label=TITLES.get(m, m))
                if f"{OCCLUSION}:{mode}" in curves:
                    ax.plot(fractions, curves[f"{OCCLUSION}:{mode}"], color="#111827", ls=":",
                            label="occlusion (reference)")
                if f"{RANDOM}:{mode}" in curves:
                    ax.plot(fractions, curves[f"{RANDOM}:{mode}"], color="#6b7280", ls="--", label="random order")
                ax.set_title(title, fontsize=8)
                ax.set_xlabel(f"share of {unit} {'removed' if mode == 'del' else 'restored'}", fontsize=7)
                ax.tick_params(labelsize=7)
                ax.spines[["top", "right"]].set_visible(False)
            axes[0].set_ylabel("target probability (mean)", fontsize=7)
            axes[1].legend(fontsize=7, frameon=False)
            return to_figure(fig, id="trust.faithfulness", title="Deletion and insertion curves",
                             alt="Mean target probability as the most attributed positions are removed or restored",
                             caption="Mean over samples. A faithful method's deletion curve falls faster, and its "
                                     "insertion curve rises faster, than the random order's (dashed); occlusion "
                                     "(dotted) shows how fast a faithful order can delete on this model.")


def _metrics(compared: dict[str, faith.Comparison], power: faith.Power, rand_del: np.ndarray, rand_ins: np.ndarray,
             methods: list[str]) -> dict[str, float]:
    """The section's numbers: random orders' areas, the test's power, each reference's and each method's areas and
    p-values."""
    metrics: dict[str, float] = {"random_deletion_auc": float(rand_del.mean()),
                                 "random_insertion_auc": float(rand_ins.mean()),
                                 "random_deletion_normalized": power.random_normalized,
                                 "deletion_start_probability": power.start,
                                 "deletion_end_probability": power.end,
                                 "faithfulness_conclusive": float(power.conclusive)}
    for ref, name in ((OCCLUSION, "occlusion"), (NOISE, "noise")):
        c = compared[ref]
        metrics[f"reference_deletion_auc/{name}"] = c.deletion
        metrics[f"reference_deletion_gain/{name}"] = c.deletion_gain
        metrics[f"reference_deletion_p/{name}"] = c.p_deletion
    metrics["reference_separation_p"] = power.separation_p
    for m in methods:
        c = compared[m]
        metrics[f"deletion_auc/{m}"] = c.deletion
        metrics[f"insertion_auc/{m}"] = c.insertion
        metrics[f"deletion_gain/{m}"] = c.deletion_gain
        metrics[f"deletion_p/{m}"] = c.p_deletion
        metrics[f"insertion_p/{m}"] = c.p_insertion
    return metrics


def _verdict(m: str, better: bool, power: faith.Power, alpha: float, explainer: bool) -> str:
    """The table's verdict on one explainer or reference."""
    if explainer:
        if better and power.calibrated:
            return "better than random"
        return "not better than random" if power.conclusive else "inconclusive (the test has no power here)"
    if m == OCCLUSION:
        return "beats random: the test can see a faithful map" if better else \
            "does not beat random: the test cannot see a faithful map"
    if power.noise.p_deletion >= alpha:
        return "does not beat random, as it should"
    return "beats random at α, as chance does once in 1/α audits" if power.calibrated else \
        "beats random clearly: the test is not calibrated"


def _unfaithful(m: str, c: faith.Comparison, power: faith.Power, alpha: float) -> Finding:
    return FINDINGS.finding(
        "unfaithful",
        message=(f"{TITLES.get(m, m)} is not faithful: deleting the positions it ranks first lowers the "
                 f"target's probability no faster than deleting random ones (deletion area "
                 f"{c.deletion:.3f} against {c.random_deletion:.3f} for random orders, one-sided Wilcoxon "
                 f"p = {c.p_deletion:.3g} over {c.samples} samples, α = {alpha}), while occlusion of "
                 f"the same positions, faithful by construction, does (area {power.occlusion.deletion:.3f}, "
                 f"p = {power.occlusion.p_deletion:.3g})."),
        evidence={"method": m, "deletion_auc": round(c.deletion, 4),
                  "random_deletion_auc": round(c.random_deletion, 4), "insertion_auc": round(c.insertion, 4),
                  "random_insertion_auc": round(c.random_insertion, 4), "p_value": c.p_deletion,
                  "occlusion_deletion_auc": round(power.occlusion.deletion, 4),
                  "occlusion_p_value": power.occlusion.p_deletion})


def _inconclusive(power: faith.Power, collapse_area: float) -> Finding:
    return FINDINGS.finding(
        "faithfulness_inconclusive", message=("The deletion test cannot judge the explainers on this model, so none is called unfaithful: "
                 + "; ".join(power.reasons) + "."),
        evidence={"random_deletion_auc": round(power.occlusion.random_deletion, 4),
                  "random_deletion_normalized": round(power.random_normalized, 4),
                  "start_probability": round(power.start, 4), "end_probability": round(power.end, 4),
                  "occlusion_deletion_auc": round(power.occlusion.deletion, 4),
                  "occlusion_p_value": power.occlusion.p_deletion,
                  "noise_deletion_auc": round(power.noise.deletion, 4),
                  "noise_p_value": power.noise.p_deletion, "separation_p_value": power.separation_p,
                  "collapse_area": collapse_area})


def _table(rows: list[list[Any]], what: str, random_orders: int) -> Table:
    return Table(id="trust.faithfulness", title="Deletion and insertion against random orders",
                 columns=["method", "deletion AUC", "random", "p (deletion)", "insertion AUC", "random",
                          "p (insertion)", "verdict"], rows=rows,
                 caption=f"Areas under the target-probability curves as {what} are removed (deletion: lower "
                         "is better) or put back (insertion: higher is better), most attributed first, against "
                         f"the mean of {random_orders} random orders per sample; one-sided Wilcoxon "
                         "signed-rank tests over samples. The verdict follows deletion: insertion starts from the "
                         "baseline, an input far from the data. The two references measure the test's power on this model: "
                         "occlusion ranks each position by the drop of the target's probability when it alone "
                         "is removed, the way deletion removes it; random maps rank at random. A method is "
                         "called unfaithful only when the first beats random orders and the random maps (p < "
                         "α), the second does not beat random orders clearly (p < α/10), and random deletion "
                         "does not collapse the prediction at once.")
