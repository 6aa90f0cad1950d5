"""Performance on the labelled audit data, from the scores the capture already computed (no extra pass).

Accuracy beside the majority-class rate with a one-sided binomial test, so an untrained or wrongly
loaded model cannot pass quietly; per-class precision/recall; expected calibration error (Guo et al.,
2017, "On Calibration of Modern Neural Networks"); a confusion matrix and a reliability diagram.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from scipy.stats import binomtest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from auditor.engine.analysis import Analysis, AuditContext, PlanContext
from auditor.schema.findings import DefaultRule, Finding, Findings, FindingSpec, Severity
from auditor.kit.figures import new_figure, to_figure
from auditor.schema.samples import encode_ints
from auditor.schema.report import Figure, Section, Table
from auditor.subject import Task


class PerformanceParams(BaseModel):
    """`[analyses.performance]`: thresholds of the performance section."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    near_chance_alpha: float = Field(0.001, gt=0.0, lt=1.0)
    """Fail unless a one-sided binomial test rejects 'no better than the majority class' at this level."""
    near_chance_margin: float = Field(0.02, ge=0.0, le=1.0)
    """... and unless accuracy beats the majority-class rate by at least this much."""
    calibration_bins: int = Field(15, ge=2)
    ece_warn: float = Field(0.1, ge=0.0, le=1.0)


def probabilities(scores: torch.Tensor) -> torch.Tensor:
    """Class probabilities: softmax over logits; one logit is binary (sigmoid)."""
    if scores.shape[1] == 1:
        scores = torch.cat([torch.zeros_like(scores), scores], dim=1)
    return torch.softmax(scores.double(), dim=1)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int) -> tuple[float, list[tuple[float, float, int]]]:
    """ECE over equal-width confidence bins, and (mean confidence, accuracy, count) per non-empty bin."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece, table = 0.0, []
    for b in range(bins):
        mask = which == b
        if mask.any():
            conf, acc = float(confidence[mask].mean()), float(correct[mask].mean())
            ece += mask.mean() * abs(conf - acc)
            table.append((conf, acc, int(mask.sum())))
    return float(ece), table


DEFAULT_RULES = (
    DefaultRule("accuracy well above chance", metric="performance.accuracy", min=0.5, optional=True,
                comments={"optional": "performance runs only on labelled data"}),
    DefaultRule("accuracy does not regress", metric="performance.accuracy", max_drop=0.01, optional=True,
                comments={"max_drop": "one point, and only when the drop is significant at `alpha`"}),
    DefaultRule("no class regresses", metric="performance.accuracy", max_class_drop=0.05, optional=True,
                comments={"max_class_drop": "five points of any one class's accuracy (its recall), Holm-corrected"}),
    DefaultRule("calibration does not degrade", metric="performance.ece", max_rise=0.05, critical=False, optional=True,
                comments={"critical": "warns only"}),
)

FINDINGS = Findings(
    "performance",
    FindingSpec("near_chance", Severity.FAIL,
                "accuracy is not clearly above the majority-class rate (binomial p > `near_chance_alpha`, or a margin "
                "under `near_chance_margin`): an untrained or wrongly loaded model does not pass quietly"),
    FindingSpec("miscalibrated", Severity.WARN,
                "the expected calibration error is above `ece_warn`"),
    FindingSpec("weak_class", Severity.WARN,
                "a class is recalled less than half as often as the overall accuracy"),
    FindingSpec("non_finite_scores", Severity.FAIL,
                "some samples got NaN or Inf scores from finite inputs: they count as wrong answers, and ECE and NLL "
                "are NaN (the reliability diagram shows the finite samples and says how many it left out)"),
    FindingSpec("labels_unused", Severity.INFO,
                "the data has labels but the model is audited as an embedding (a bare encoder without `--head`) and "
                "the probes, which read them, do not run"),
)
"""Every finding the performance analysis gives (docs/findings.md is written from these)."""


class Performance(Analysis):
    """Accuracy, per-class precision and recall, calibration; fails a model near chance level."""

    id: ClassVar[str] = "performance"
    title: ClassVar[str] = "Performance"
    findings: ClassVar[Findings] = FINDINGS
    default_rules: ClassVar[tuple[DefaultRule, ...]] = DEFAULT_RULES
    tasks: ClassVar[frozenset[Task]] = frozenset({"classification", "embedding"})
    """For an embedding given labels it measures nothing, but says so: what the labels were used for, how
    to classify."""
    params_type: ClassVar[type[BaseModel]] = PerformanceParams
    cost_note: ClassVar[str] = "reads the scores of the shared capture; no pass of its own"

    def __init__(self, params: PerformanceParams | None = None) -> None:
        self.params: PerformanceParams = params or PerformanceParams()

    def not_applicable(self, ctx: PlanContext) -> str | None:
        reason = super().not_applicable(ctx)
        if reason is None and ctx.subject.data.labels is None:
            if ctx.subject.task == "embedding":
                return "the model is a bare encoder without a head (add one with --head), and the data has no labels"
            return "the audit data has no labels"
        return reason

    def run(self, ctx: AuditContext) -> Section:
        params = self.params
        if ctx.subject.task == "embedding":
            return self._embedding(ctx)
        clean = ctx.clean
        if ctx.subject.labels is None or clean.correct is None or clean.accuracy is None or clean.loss is None:
            return Section(id=self.id, title=self.title,
                           summary="The audit data has no labels, so performance was not measured.")
        probs = probabilities(ctx.capture.scores)
        labels = ctx.subject.labels.numpy()
        finite = torch.isfinite(probs).all(dim=1).numpy()
        predicted = clean.predictions.numpy()  # -1 where the scores are not finite: a wrong answer
        n, n_classes = len(labels), probs.shape[1]
        names = ctx.subject.class_names
        correct = clean.correct.numpy()
        accuracy = clean.accuracy
        counts = np.bincount(labels, minlength=n_classes)
        majority_rate = float(counts.max() / n)
        p_value = float(binomtest(int(correct.sum()), n, majority_rate, alternative="greater").pvalue) \
            if majority_rate < 1.0 else 1.0
        nll = clean.loss
        confidence = probs.max(dim=1).values.numpy()
        # Calibration is undefined over samples without a probability: ECE is NaN then (and fails below),
        # while the diagram still shows the bins of the finite ones.
        n_bad = int((~finite).sum())
        ece, bins = expected_calibration_error(confidence[finite], correct[finite], params.calibration_bins) \
            if finite.any() else (float("nan"), [])
        ece = float("nan") if n_bad else ece
        precision, recall, f1, support = precision_recall_fscore_support(
            labels, predicted, labels=list(range(n_classes)), zero_division=0)
        present = support > 0
        macro_f1 = float(f1[present].mean()) if present.any() else 0.0
        metrics = {"accuracy": accuracy, "majority_rate": majority_rate, "macro_f1": macro_f1,
                   "ece": ece, "nll": nll, "binomial_p_value": p_value, "samples": float(n),
                   "non_finite_predictions": float(n_bad)}
        findings = _findings(params, names, finite, accuracy=accuracy, majority_rate=majority_rate, p_value=p_value,
                             ece=ece, recall=recall, support=support)
        table = Table(
            id="performance.per_class", title="Per-class metrics",
            columns=["class", "support", "precision", "recall", "f1"],
            rows=[[names[c], int(support[c]), round(float(precision[c]), 3), round(float(recall[c]), 3),
                   round(float(f1[c]), 3)] for c in range(n_classes)],
        )
        matrix = confusion_matrix(labels, predicted, labels=list(range(n_classes)))
        figures = [_confusion_figure(matrix, names), _reliability_figure(bins, ece, left_out=n_bad)]
        summary = (f"Accuracy {accuracy:.1%} on {n} labelled samples (majority class {majority_rate:.1%}); "
                   f"macro F1 {macro_f1:.3f}; " + (f"calibration undefined ({n_bad} samples with NaN/Inf scores)."
                                                  if n_bad else f"expected calibration error {ece:.3f}."))
        return Section(id=self.id, title=self.title, summary=summary, metrics=metrics, tables=[table],
                       figures=figures, findings=findings,
                       details={"confusion_matrix": matrix.tolist(), "class_names": names,
                                # per sample, for a paired comparison with the next release (McNemar)
                                "predicted": encode_ints(predicted), "labels": encode_ints(labels)})

    def _embedding(self, ctx: AuditContext) -> Section:
        """No performance for an embedding model; the labels it was given go unused, and the reader is told."""
        if ctx.subject.loaded.has_head:
            what = "was audited as an embedding model (task embedding)"
            how = "audit it as a classifier (task='classification')"
        else:
            what = "is a bare encoder without a classification head"
            how = ("pass --head HEAD.safetensors (a linear head on the pooled output; [model] head in a config "
                   "file) to classify with it and get accuracy, calibration and a confusion matrix")
        labels = ctx.subject.data.labels
        assert labels is not None  # not_applicable: without labels, performance does not run
        classes = len({str(label) for label in labels})
        if _probes_read_labels(ctx):
            return Section(id=self.id, title=self.title, summary=(
                f"Not measured: the model {what}. Its {len(labels)} labels ({classes} classes) are the task of the "
                f"linear probes instead (see the probes section: at which block they are linearly decodable). "
                f"To measure performance, {how}."))
        message = (f"The data's {len(labels)} labels ({classes} classes) were read but not used: the model {what}, "
                   "and the linear probes, which would read them, do not run. "
                   f"To measure performance, {how}.")
        return Section(id=self.id, title=self.title, summary=f"Not measured. {message}",
                       findings=[FINDINGS.finding("labels_unused", message=message,
                                         evidence={"labels": len(labels), "classes": classes})])


def _findings(params: PerformanceParams, names: list[str], finite: np.ndarray, *, accuracy: float,
              majority_rate: float, p_value: float, ece: float, recall: np.ndarray, support: np.ndarray
              ) -> list[Finding]:
    """Non-finite scores, near chance, miscalibrated, and (unless near chance) the weak classes."""
    n, n_bad, present = len(finite), int((~finite).sum()), support > 0
    findings: list[Finding] = []
    if n_bad:
        first = int(np.flatnonzero(~finite)[0])
        findings.append(FINDINGS.finding(
            "non_finite_scores",
            message=(f"{n_bad} of {n} audit samples got NaN or Inf scores (the first: sample {first}); "
                     "they count as wrong answers, and calibration (ECE, NLL) is undefined."),
            evidence={"non_finite_samples": n_bad, "samples": n, "first_sample": first},
        ))
    margin = accuracy - majority_rate
    if p_value > params.near_chance_alpha or margin < params.near_chance_margin:
        findings.append(FINDINGS.finding(
            "near_chance",
            message=(f"Accuracy {accuracy:.1%} is not clearly above the majority-class rate "
                     f"{majority_rate:.1%} (one-sided binomial p = {p_value:.2g}): the model may be "
                     "untrained, wrongly loaded, or fed the wrong data."),
            evidence={"accuracy": round(accuracy, 4), "majority_rate": round(majority_rate, 4),
                      "p_value": p_value, "samples": n},
        ))
    if ece > params.ece_warn:
        findings.append(FINDINGS.finding(
            "miscalibrated",
            message=(f"Confidence does not match accuracy: expected calibration error {ece:.3f} "
                     f"(above {params.ece_warn:g}); treat the model's probabilities with care."),
            evidence={"ece": round(ece, 4), "threshold": params.ece_warn},
        ))
    # A model near chance gets that one failing finding, not a weak-class warning per class.
    if not any(f.id == FINDINGS.id("near_chance") for f in findings):
        for c in np.flatnonzero(present):
            if recall[c] < 0.5 * accuracy and support[c] >= 5:
                findings.append(FINDINGS.finding(
                    "weak_class",
                    message=(f"Class {names[c]!r} is recalled {recall[c]:.0%} of the time, against "
                             f"{accuracy:.0%} overall accuracy."),
                    evidence={"class": names[c], "recall": round(float(recall[c]), 4),
                              "support": int(support[c])},
                ))
    return findings


def _probes_read_labels(ctx: AuditContext) -> bool:
    """Whether the probes analysis runs on this audit and probes for the data's labels."""
    selection = ctx.config.analyses
    if "probes" in selection.skip or (selection.only is not None and "probes" not in selection.only):
        return False
    return bool(selection.table("probes").get("labels", True))


def _confusion_figure(matrix: np.ndarray, names: list[str]) -> Figure:
    k = len(names)
    size = min(7.5, max(3.2, 0.45 * k + 1.8))
    with new_figure(size, size * 0.85) as (fig, ax):
        rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(k), [_short(n) for n in names], rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center")
        ax.set_yticks(range(k), [_short(n) for n in names])
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if k <= 20:
            for i in range(k):
                for j in range(k):
                    if matrix[i, j]:
                        ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8 if k > 10 else 9,
                                color="white" if rates[i, j] > 0.6 else "#1f2937")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
        return to_figure(fig, id="performance.confusion", title="Confusion matrix",
                         alt="Confusion matrix of true against predicted classes, with counts",
                         caption="Rows: true class; columns: predicted class; colour: share of the row, numbers: counts.")


def _reliability_figure(bins: list[tuple[float, float, int]], ece: float, *, left_out: int = 0) -> Figure:
    with new_figure(4.2, 3.6) as (fig, ax):
        ax.plot([0, 1], [0, 1], ls="--", color="#9ca3af", lw=1, label="perfect calibration")
        if bins:
            conf, acc, count = zip(*bins, strict=True)
            sizes = [20 + 200 * c / max(count) for c in count]
            ax.scatter(conf, acc, s=sizes, color="#2563eb", alpha=0.7, label="confidence bins")
            ax.plot(conf, acc, color="#2563eb", lw=1)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("mean confidence")
        ax.set_ylabel("accuracy")
        if left_out:  # never an "ECE = nan" that reads like a number
            ax.set_title(f"ECE undefined: {left_out} sample{'s' * (left_out != 1)} with NaN/Inf scores left out",
                         fontsize=9, color="#b42318")
        else:
            ax.set_title(f"ECE = {ece:.3f}", fontsize=10)
        legend = ax.legend(loc="upper left", fontsize=8, frameon=False)
        for handle in legend.legend_handles:  # one modest dot, not the size of the biggest bin
            if hasattr(handle, "set_sizes"):
                handle.set_sizes([30])
        return to_figure(fig, id="performance.reliability", title="Reliability diagram",
                         alt="Reliability diagram: accuracy against mean confidence per confidence bin",
                         caption="Each dot is a confidence bin (size: number of samples); dots on the diagonal are well calibrated.")


def _short(name: str, limit: int = 14) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


__all__ = ["Performance", "expected_calibration_error", "probabilities"]
