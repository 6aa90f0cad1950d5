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
from pydantic import BaseModel
from threadpoolctl import threadpool_limits

from auditor.analyses.probes.figures import accuracy_figure, mdl_figure, results_tables
from auditor.analyses.probes.findings import FINDINGS
from auditor.analyses.probes.mdl import online_code_length
from auditor.analyses.probes.params import ProbesParams
from auditor.analyses.probes.random_init import fresh_weights
from auditor.analyses.probes.report import property_detail, property_findings, summary_text
from auditor.analyses.probes.representations import (compact, head_block, head_lens, present, probe_needs,
                                                      probed_order, representations, same)
from auditor.analyses.probes.results import ModuleResult, PropertyResult
from auditor.analyses.probes.ridge import (
    canonical_order,
    cross_validate,
    stratified_folds,
    usable_folds,
    within_fold_permutations,
)
from auditor.analyses.probes.sets import (ProbeSet, Property, audit_labels, builtin_gratings, builtin_sentiment,
                                          probe_subject, unique_names, user_file)
from auditor.engine.analysis import Analysis, AuditContext, PlanContext
from auditor.engine.capture import Capture
from auditor.errors import DataError
from auditor.schema.findings import Finding, Findings
from auditor.schema.report import Cost, Section
from auditor.subject import Subject, Task
from auditor.walk.needs import Needs
from auditor.walk.patch import Patch


class Probes(Analysis):
    """Linear probes on every block and the head's input, with permutation, random-network and MDL baselines."""

    id: ClassVar[str] = "probes"
    tasks: ClassVar[frozenset[Task]] = frozenset({"classification", "embedding", "causal_lm"})
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
            builtin = "built-in probe sets are off" if not self.params.builtin else \
                "no built-in probe set for tabular data"
            return f"no labels to probe for, and {builtin} ([analyses.probes] data adds one)"
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
        labels = compact(labels[kept])
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
            twin = next((n for n in base.modules if same(trained[n], trained[name])
                         and same(random.get(n), random.get(name))), None)
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
                result.head_lens = head_lens(head_module, x, labels, prop.head_classes[present(prop, kept)])
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
        summary = summary_text(ctx, results, order, head, scheme)
        details: dict[str, Any] = {
            "modules": order, "head_input": head,
            "properties": [property_detail(res) for res in results],
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


__all__ = ["Probes", "ProbesParams", "head_block", "probe_needs"]
