"""Whether two audits can be compared sample by sample, and the per-sample outcomes that pairing uses.

Pairing needs both audits to have seen the same samples in the same order (the same data fingerprint),
to have kept their per-sample predictions (the performance section does), and to map labels to the same
classes. Anything less is an unpaired comparison, and the description says why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from auditor.schema.samples import decode_ints
from auditor.schema.report import AuditReport


@dataclass(frozen=True)
class Outcomes:
    """One audit's per-sample predicted class and label (class indices; -1: a non-finite prediction)."""

    predicted: np.ndarray
    labels: np.ndarray
    class_names: list[str]

    @property
    def correct(self) -> np.ndarray:
        return np.asarray(self.predicted == self.labels)

    def __len__(self) -> int:
        return len(self.labels)


def outcomes(report: AuditReport) -> Outcomes | None:
    """The per-sample outcomes an audit kept, or None (no performance section, or an audit from before 1.2)."""
    try:
        details = report.section("performance").details
    except KeyError:
        return None
    predicted, labels = details.get("predicted"), details.get("labels")
    if not isinstance(predicted, str) or not isinstance(labels, str):
        return None
    try:
        pred, lab = decode_ints(predicted), decode_ints(labels)
    except ValueError:
        return None
    if len(pred) != len(lab) or not len(lab):
        return None
    names = details.get("class_names") or report.metadata.class_names
    return Outcomes(predicted=pred, labels=lab, class_names=[str(n) for n in names])


@dataclass(frozen=True)
class Pairing:
    """How two audits compare: `paired` when their predictions can be matched sample by sample."""

    paired: bool
    description: str
    old: Outcomes | None
    new: Outcomes | None


def pair(old: AuditReport, new: AuditReport) -> Pairing:
    """Decides whether `old` and `new` are compared sample by sample, and says why not when they are not."""
    old_print, new_print = old.metadata.data_fingerprint, new.metadata.data_fingerprint
    a, b = outcomes(old), outcomes(new)
    if old_print is None or new_print is None:
        which = "baseline" if old_print is None else "new"
        reason = f"the {which} audit records no data fingerprint (written before auditor 1.2 schema)"
    elif old_print != new_print:
        reason = f"the audits ran on different data (fingerprints {old_print[:12]}… and {new_print[:12]}…)"
    elif a is None or b is None:
        which = "baseline" if a is None else "new"
        reason = f"the {which} audit kept no per-sample predictions"
    elif len(a) != len(b) or not np.array_equal(a.labels, b.labels) or a.class_names != b.class_names:
        reason = "the same samples, but their labels map to different classes"
    else:
        return Pairing(True, f"paired on the same {len(b)} samples (data fingerprint {new_print[:12]}…)", a, b)
    return Pairing(False, f"unpaired: {reason}", a, b)


__all__ = ["Outcomes", "Pairing", "outcomes", "pair"]
