"""Linear probes: which block's representation a linear classifier can read each property from, held
honest by three baselines (Alain & Bengio, 2016, "Understanding intermediate layers using linear
classifier probes"; Belinkov, 2022, "Probing Classifiers: Promises, Shortcomings, and Advances").

Every block's pooled output (mask-aware mean over tokens, global average over space) and the input to the
head come from the shared capture, one pass for all of them. The probe is a ridge classifier on
standardized features, its penalty chosen by exact leave-one-out within each training fold, scored by
stratified k-fold accuracy with a Wilson interval beside the majority-class rate (`auditor.analyses.probes.ridge`).
The baselines:
- permutation: the same probe, same folds, on labels permuted within each fold (so every fold keeps the
  class counts its stratification gave the true labels: permuted and true labels are then exchangeable
  when nothing is decodable); the maximum over blocks of each permutation's accuracy, and its 95th
  percentile, is what a block must beat to count as decoding the property (a per-block comparison would
  find "signal" somewhere by chance);
- random network: the same architecture re-initialized (`auditor.analyses.probes.random_init`, applied with
  `patch`), probed the same way, one more pass; trained − random per block is what training added;
- description length: the online code length of the labels (Voita & Titov, 2020; `auditor.analyses.probes.mdl`).
The model's own head is applied as a lens to every block whose pooled width is the head's input width
(as the logit lens reads a language model's residual stream), with no fitting.

What is probed (`auditor.analyses.probes.sets`): the audit data's labels, the built-in sentiment sentences for
text models, gratings for image models, and a labelled file from `[analyses.probes] data`.
"""

from __future__ import annotations

import math
import time
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from threadpoolctl import threadpool_limits

from auditor.engine.analysis import Analysis, AuditContext, PlanContext
from auditor.engine.capture import Capture
from auditor.walk.needs import Needs
from auditor.errors import DataError
from auditor.schema.findings import Finding, Severity
from auditor.analyses.probes.results import ModuleResult, PropertyResult
from auditor.analyses.probes.figures import accuracy_figure, mdl_figure, results_tables
from auditor.analyses.probes.mdl import online_code_length
from auditor.analyses.probes.random_init import fresh_weights
from auditor.analyses.probes.ridge import (
    canonical_order,
    cross_validate,
    stratified_folds,
    usable_folds,
    within_fold_permutations,
)
from auditor.analyses.probes.sets import (ProbeSet, Property, audit_labels, builtin_gratings, builtin_sentiment,
                                  probe_subject, to_tensor, unique_names, user_file)
from auditor.schema.report import Cost, Section
from auditor.subject import Subject
from auditor.subject.task import log_probabilities
from auditor.walk.patch import Patch
from auditor.analyses.probes.findings import FINDINGS
from auditor.schema.findings import Findings


class ProbesParams(BaseModel):
    """`[analyses.probes]`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    folds: int = Field(5, ge=2, le=20)
    """Stratified folds (fewer when the rarest class has fewer samples)."""
    permutations: int = Field(20, ge=1, le=1000)
    """Label permutations of the permutation baseline."""
    random_init: bool = True
    """Probe the re-initialized network too (one more pass over each probe set)."""
    mdl: bool = True
    """Measure the online code length (MDL) of each property at each block."""
    labels: bool = True
    """Probe for the audit data's labels."""
    builtin: bool = True
    """Probe text models for sentiment (built-in sentences) and image models for gratings."""
    data: str | None = None
    """A labelled file of extra inputs: CSV/JSONL for text (a text column and property columns), .npz for
    images and arrays (`x` as the model takes it, one label array per property)."""
    properties: tuple[str, ...] = ()
    """Columns (arrays) of `data` to probe for; default: every column but the text (every array but `x`)."""
    text_column: str | None = None
    """The text column of `data` (default: the audit data's)."""
    max_samples: int = Field(2000, ge=10)
    """At most this many samples of `data` (a seeded draw)."""
    not_learned_margin: float = Field(0.05, ge=0.0, le=1.0)
    """`probes.not_learned` when the trained network beats the random one by less than this at the peak."""
    lost_margin: float = Field(0.1, ge=0.0, le=1.0)
    """`probes.lost_in_head` when the head's input falls this far below the peak (and outside its interval)."""


class Probes(Analysis):
    """Linear probes on every block and the head's input, with permutation, random-network and MDL baselines."""

    id: ClassVar[str] = "probes"
    title: ClassVar[str] = "Linear probes"
    findings: ClassVar[Findings] = FINDINGS
    params_type: ClassVar[type[BaseModel]] = ProbesParams
    cost_note: ClassVar[str] = ("pooled block outputs in the shared capture; one pass over each probe set, and one "
                                "more over each (the audit data too) with the network re-initialized")

    def __init__(self, params: ProbesParams | None = None) -> None:
        self.params: ProbesParams = params or ProbesParams()

    # --- plan ----------------------------------------------------------------------------------------

    def probe_sets(self, ctx: PlanContext) -> list[ProbeSet]:
        p, sets = self.params, []
        labelled = audit_labels(ctx) if p.labels else None
        if labelled is not None:
            sets.append(labelled)
        if p.builtin and ctx.subject.modality == "text":
            sets.append(builtin_sentiment(ctx))
        if p.builtin and ctx.subject.modality == "image":
            sets.append(builtin_gratings(ctx))
        if p.data:
            sets.append(user_file(ctx, p.data, columns=p.properties, text_column=p.text_column,
                                  max_samples=p.max_samples))
        return unique_names(sets)

    def not_applicable(self, ctx: PlanContext) -> str | None:
        reason = super().not_applicable(ctx)
        if reason is None and not self._has_anything(ctx):
            return "no labels to probe for, and no built-in probe set for tabular data ([analyses.probes] data adds one)"
        return reason

    def _has_anything(self, ctx: PlanContext) -> bool:
        p = self.params
        return bool((p.labels and ctx.subject.data.labels is not None) or p.data
                    or (p.builtin and ctx.subject.modality in ("text", "image")))

    def needs(self, ctx: PlanContext) -> Needs:
        if not (self.params.labels and ctx.subject.data.labels is not None):
            return Needs()  # only probe sets of their own: the shared capture needs nothing
        return probe_needs(ctx)

    def cost(self, ctx: PlanContext) -> Cost:
        sets = self.probe_sets(ctx)
        batches = sum(math.ceil(s.samples / ctx.config.batch_size) for s in sets if s.data is not None)
        random_batches = batches + (ctx.n_batches if any(s.data is None for s in sets) else 0)
        forwards = (batches + (random_batches if self.params.random_init else 0)) / ctx.n_batches
        extra = [f"{s.name} ({s.samples})" for s in sets if s.data is not None]
        note = (f"{', '.join(extra)} captured once" if extra else "no probe set of its own") + \
               ("; every set again with the network re-initialized" if self.params.random_init else "")
        return Cost(forwards=forwards, note=note)

    # --- run -----------------------------------------------------------------------------------------

    def run(self, ctx: AuditContext) -> Section:
        p = self.params
        sets = self.probe_sets(ctx)
        needs = probe_needs(ctx)
        fresh = fresh_weights(ctx.subject.model, seed=ctx.config.seed) if p.random_init else None
        patches = {"": Patch(weights=fresh.weights)} if fresh is not None else None
        head = head_block(ctx)
        results: list[PropertyResult] = []
        timing = {"capture_seconds": ctx.capture.seconds, "extra_capture_seconds": 0.0, "fit_seconds": 0.0}
        order = probed_order(ctx.capture, needs, head)
        for probe_set in sets:
            started = time.perf_counter()
            # the audit data is in the shared capture; a probe set of its own is encoded once, captured twice
            subject = None if probe_set.data is None else probe_subject(ctx.subject, probe_set.data)
            trained_capture = ctx.capture if subject is None else \
                _capture(ctx, needs, subject=subject, label=f"probes: {probe_set.name}")
            random_capture = None
            if patches is not None:
                random_capture = _capture(ctx, needs, subject=subject, patches=patches,
                                          label=f"probes: {probe_set.name}, random network")
            timing["extra_capture_seconds"] += time.perf_counter() - started
            trained = representations(trained_capture, needs, head)
            random = representations(random_capture, needs, head) if random_capture is not None else {}
            started = time.perf_counter()
            # One BLAS thread: the fits are many small decompositions, which two threads on a busy
            # machine slow down five- to tenfold (measured on MiniLM: 3.9 s against 25 s).
            with threadpool_limits(limits=1, user_api="blas"):
                for prop in probe_set.properties:
                    results.append(self._probe(ctx, probe_set, prop, trained, random, order, head))
            timing["fit_seconds"] += time.perf_counter() - started
        return self._section(ctx, results, order, head, timing, fresh.scheme if fresh else None,
                             fresh.kept_scale if fresh else [])

    def _probe(self, ctx: AuditContext, probe_set: ProbeSet, prop: Property, trained: dict[str, np.ndarray],
               random: dict[str, np.ndarray], order: list[str], head: str | None) -> PropertyResult:
        p, seed = self.params, ctx.config.seed
        labels = prop.labels
        counts = np.bincount(labels, minlength=len(prop.classes))
        keep = counts[labels] >= 2  # a class with one sample cannot be both trained on and tested
        kept = np.flatnonzero(keep)
        labels = _compact(labels[kept])
        k = usable_folds(labels, p.folds)
        majority = float(np.bincount(labels).max() / len(labels)) if len(labels) else math.nan
        base = PropertyResult(prop=prop, probe_set=probe_set, samples=len(labels), folds=k, majority=majority,
                              modules={}, threshold=math.nan)
        if k == 0 or len(np.unique(labels)) < 2:
            base.note = "fewer than two classes with two samples each: not probed"
            return base
        keys = probe_set.keys[kept] if probe_set.keys is not None else None
        sample_order = canonical_order(keys, len(labels))
        folds = stratified_folds(labels, folds=k, seed=seed, order=sample_order)
        rng = np.random.default_rng(seed)
        permutations = within_fold_permutations(folds, sample_order, p.permutations, rng)
        send_order = sample_order[rng.permutation(len(labels))]
        classes = int(labels.max()) + 1
        head_module = ctx.tree.get(head) if head is not None else None
        head_width = trained[head].shape[1] if head is not None and head in trained else None
        for name in order:
            if name not in trained:
                continue
            x = trained[name][kept]
            if not np.isfinite(x).all():
                continue
            twin = next((n for n in base.modules if _same(trained[n], trained[name])
                         and _same(random.get(n), random.get(name))), None)
            if twin is not None:  # e.g. a head reading the last block's pooled output: the same numbers
                base.modules[name] = base.modules[twin]
                continue
            cv = cross_validate(x, labels, classes, folds, permutations=permutations)
            low, high = cv.interval()
            result = ModuleResult(accuracy=cv.accuracy, low=low, high=high, permuted=cv.permuted, alphas=cv.alphas,
                                  low_end=cv.low_end, high_end=cv.high_end)
            if name in random and np.isfinite(random[name][kept]).all():
                result.random_init = cross_validate(random[name][kept], labels, classes, folds).accuracy
                if p.mdl:
                    result.random_compression = online_code_length(random[name][kept], labels, classes,
                                                                   order=send_order).compression
            if p.mdl:
                code = online_code_length(x, labels, classes, order=send_order)
                result.mdl_bits, result.compression = code.bits_per_sample, code.compression
            if head_module is not None and prop.head_classes is not None and x.shape[1] == head_width:
                result.head_lens = head_lens(head_module, x, labels, prop.head_classes[_present(prop, kept)])
            base.modules[name] = result
        if base.modules:
            maxima = np.stack([r.permuted for r in base.modules.values()]).max(axis=0)
            base.threshold = float(np.quantile(maxima, 0.95))
        return base

    def _section(self, ctx: AuditContext, results: list[PropertyResult], order: list[str], head: str | None,
                 timing: dict[str, float], scheme: str | None, kept_scale: list[str]) -> Section:
        several = len(results) > 1
        module_metrics: dict[str, dict[str, float]] = {}
        metrics: dict[str, float] = {"probed_modules": float(len(order)), "properties": float(len(results))}
        findings: list[Finding] = []
        for res in results:
            sfx = f"/{res.prop.name}" if several else ""
            for name, r in res.modules.items():
                values = module_metrics.setdefault(name, {})
                values[f"probe_accuracy{sfx}"] = r.accuracy
                values[f"probe_accuracy_low{sfx}"] = r.low
                values[f"probe_accuracy_high{sfx}"] = r.high
                values[f"probe_permutation_accuracy{sfx}"] = float(np.quantile(r.permuted, 0.95))
                if r.random_init is not None:
                    values[f"probe_random_init_accuracy{sfx}"] = r.random_init
                if r.mdl_bits is not None and r.compression is not None:
                    values[f"probe_mdl_bits{sfx}"] = r.mdl_bits
                    values[f"probe_compression{sfx}"] = r.compression
                if r.head_lens is not None:
                    values[f"head_lens_accuracy{sfx}"] = r.head_lens
            if not res.modules:
                continue
            peak = max(res.modules, key=lambda n: (res.modules[n].accuracy, -order.index(n)))
            metrics[f"peak_accuracy{sfx}"] = res.modules[peak].accuracy
            metrics[f"majority_rate{sfx}"] = res.majority
            metrics[f"permutation_threshold{sfx}"] = res.threshold
            findings += property_findings(ctx, res, peak, order, head, self.params)
        summary = _summary(ctx, results, order, head, scheme)
        details: dict[str, Any] = {
            "modules": order, "head_input": head,
            "properties": [_detail(res) for res in results],
            "random_init": {"scheme": scheme, "kept_scale": kept_scale[:20]} if scheme else None,
            "timing_seconds": {k: round(v, 3) for k, v in timing.items()},
            "method": {"probe": "ridge classifier on standardized features, penalty by exact leave-one-out",
                       "folds": "stratified, shuffled with the seed in an order set by each sample's content",
                       "interval": "Wilson 95%", "permutation_threshold": "95th percentile of the maximum over "
                       "blocks", "mdl": "online code (Voita & Titov, 2020), blocks of doubling size"},
        }
        figures = [f for f in (accuracy_figure(res, order, head) for res in results) if f is not None]
        mdl = mdl_figure(results, order, head)
        if mdl is not None:
            figures.append(mdl)
        return Section(id=self.id, title=self.title, summary=summary, metrics=metrics,
                       tables=results_tables(results, order, head), figures=figures, findings=findings,
                       module_metrics=module_metrics, details=details)


def _capture(ctx: AuditContext, needs: Needs, *, subject: Subject | None = None,
             patches: dict[str, Patch] | None = None, label: str) -> Capture:
    """One extra capture pass. The model failing on it is this analysis's failure (an error section), not bad
    audit input: the audit data already went through the shared capture."""
    try:
        return ctx.executor.capture(needs, subject=subject, patches=patches, label=label)
    except DataError as err:
        raise RuntimeError(f"{label}: {err}") from err


# --- representations -------------------------------------------------------------------------------------

def head_block(ctx: PlanContext) -> str | None:
    """The head block (its input is probed), or None for a bare encoder."""
    return next((b.name for b in ctx.blocks if b.kind == "head"), None)


def probe_needs(ctx: PlanContext) -> Needs:
    """Pooled outputs of every block but the head, and the pooled input of the head."""
    blocks = frozenset(b.name for b in ctx.blocks if b.kind != "head")
    head = head_block(ctx)
    return Needs(pooled=blocks, pooled_inputs=frozenset({head}) if head is not None else frozenset())


def representations(capture: Capture, needs: Needs, head: str | None) -> dict[str, np.ndarray]:
    """Module name -> (samples, units) float64: block outputs, and under the head's name its input. A block called
    more than once per forward is probed per call (`<name>@<k>`), not as the mean of its calls."""
    reps = {k: capture.pooled[k].double().numpy() for n in needs.pooled for k in (capture.call_keys(n) or [n])
            if k in capture.pooled}
    if head is not None and head in capture.pooled_inputs:
        reps[head] = capture.pooled_inputs[head].double().numpy()
    return reps


def probed_order(capture: Capture, needs: Needs, head: str | None) -> list[str]:
    """The modules that ran, in execution order (the head's entry, its input, where the head runs)."""
    names = [k for n in needs.pooled for k in (capture.call_keys(n) or [n])]
    names += [n for n in needs.pooled_inputs if n not in names]
    names = [n for n in names if n in capture.records and capture.records[n].order is not None]
    return sorted(names, key=lambda n: (capture.records[n].order or 0, n))


def head_lens(head: torch.nn.Module, x: np.ndarray, labels: np.ndarray, head_classes: np.ndarray) -> float | None:
    """Accuracy of the model's own head applied to a representation, without fitting; None if it cannot be."""
    try:
        with torch.no_grad():
            scores = head(to_tensor(x, head))
        predicted = log_probabilities(scores.float().cpu()).argmax(dim=1).numpy()
    except Exception:  # a head that is not a plain map of its input width (a conv, a tuple output)
        return None
    return float((predicted == head_classes[labels]).mean())


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and bool(np.array_equal(a, b))


def _compact(labels: np.ndarray) -> np.ndarray:
    present = np.unique(labels)
    return np.searchsorted(present, labels)


def _present(prop: Property, kept: np.ndarray) -> np.ndarray:
    """The classes of `prop` that survive dropping one-sample classes, in order."""
    return np.unique(prop.labels[kept])


# --- findings and text -----------------------------------------------------------------------------------

def property_findings(ctx: AuditContext, res: PropertyResult, peak: str, order: list[str], head: str | None,
                      params: ProbesParams) -> list[Finding]:
    """peak_layer, no_signal, not_learned and lost_in_head for one property."""
    name, top = res.prop.name, res.modules[peak]
    mild = res.prop.builtin
    where = _label(peak, head)
    findings = []
    signal = top.accuracy > res.threshold
    evidence: dict[str, float | int | str] = {
        "property": name, "module": peak, "accuracy": round(top.accuracy, 4), "accuracy_low": round(top.low, 4),
        "accuracy_high": round(top.high, 4), "majority_rate": round(res.majority, 4),
        "permutation_threshold": round(res.threshold, 4), "samples": res.samples}
    if top.random_init is not None:
        evidence["random_init_accuracy"] = round(top.random_init, 4)
    if not signal:
        findings.append(FINDINGS.finding(
            "no_signal", severity=Severity.INFO if mild else Severity.WARN, module=None,
            message=(f"No block carries {name!r} linearly: the best probe ({where}, {top.accuracy:.1%}) does not beat "
                     f"what shuffled labels reach at the best block ({res.threshold:.1%}, 95th percentile over "
                     f"{len(top.permuted)} permutations; majority class {res.majority:.1%})."),
            evidence=evidence))
        return findings
    over_random = f", {top.accuracy - top.random_init:+.1%} over the re-initialized network" \
        if top.random_init is not None else ""
    findings.append(FINDINGS.finding(
        "peak_layer", module=peak,
        message=(f"{name!r} is best decodable at {where}: {top.accuracy:.1%} [{top.low:.1%}, {top.high:.1%}] "
                 f"against {res.threshold:.1%} for shuffled labels and {res.majority:.1%} for the majority class"
                 f"{over_random}."),
        evidence=evidence))
    if top.random_init is not None and top.accuracy - top.random_init < params.not_learned_margin:
        findings.append(FINDINGS.finding(
            "not_learned", module=peak,
            message=(f"At {where}, the re-initialized network carries {name!r} as well as the trained one "
                     f"({top.random_init:.1%} against {top.accuracy:.1%}): the property lives in the input or the "
                     "architecture, not in what training taught."),
            evidence=evidence))
    output = head if head is not None and head in res.modules else order[-1]
    out = res.modules.get(output)
    if out is not None and output != peak and top.accuracy - out.accuracy >= params.lost_margin and out.high < top.low:
        findings.append(FINDINGS.finding(
            "lost_in_head", severity=Severity.INFO if mild else Severity.WARN, module=output,
            message=(f"{name!r} is decodable at {where} ({top.accuracy:.1%}) but much less at "
                     f"{_label(output, head)} ({out.accuracy:.1%}): the later blocks discard it."),
            evidence={**evidence, "output_module": output, "output_accuracy": round(out.accuracy, 4)}))
    return findings


def _label(name: str, head: str | None) -> str:
    return f"the input of the head ({name})" if name == head else name


def _summary(ctx: AuditContext, results: list[PropertyResult], order: list[str], head: str | None,
             scheme: str | None) -> str:
    blocks = len([n for n in order if n != head])
    what = f"{blocks} block{'s' * (blocks != 1)}" + (" and the input of the head" if head in order else "")
    props = "; ".join(f"{r.prop.name} ({r.probe_set.description if r.probe_set.data is not None else 'audit data'}, "
                      f"{len(r.prop.classes)} classes)" for r in results)
    text = (f"Linear probes on {what} for {len(results)} propert{'ies' if len(results) != 1 else 'y'}: {props}. "
            "Ridge classifiers on standardized features, the penalty chosen by exact leave-one-out inside each of "
            f"{max((r.folds for r in results), default=0)} stratified folds; baselines: permuted labels (the 95th "
            "percentile of the best block decides whether a property is decodable at all)")
    if scheme:
        text += f", the same network re-initialized ({scheme})"
    text += ", and the online code length (MDL)."
    if head in order:
        text += " The head lens applies the model's own head to every block of its input's width."
    notes = [f"{r.prop.name}: {r.note}" for r in results if r.note]
    return text + (" " + " ".join(notes) if notes else "")


def _detail(res: PropertyResult) -> dict[str, Any]:
    return {"property": res.prop.name, "set": res.probe_set.name, "classes": res.prop.classes, "samples": res.samples,
            "folds": res.folds, "majority_rate": res.majority, "permutation_threshold": res.threshold,
            "builtin": res.prop.builtin, "note": res.note,
            "modules": {n: {"accuracy": r.accuracy, "interval": [r.low, r.high], "random_init": r.random_init,
                            "mdl_bits": r.mdl_bits, "compression": r.compression,
                            "random_compression": r.random_compression, "head_lens": r.head_lens,
                            "alphas": [float(f"{a:.4g}") for a in r.alphas], "alpha_low_end": r.low_end,
                            "alpha_high_end": r.high_end} for n, r in res.modules.items()}}


__all__ = ["Probes", "ProbesParams", "head_block", "probe_needs"]
