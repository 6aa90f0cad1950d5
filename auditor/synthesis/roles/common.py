"""The tags the role rules give, and what their clauses share: how numbers are written, a finding's numbers as
evidence."""

from __future__ import annotations

import math

from auditor.schema.cards import Evidence
from auditor.schema.findings import Finding

MAIN_PATH = "main path"
CRITICAL = "critical"
REDUNDANT = "redundant"
PRUNABLE = "prunable"
UNUSED = "unused by the decision"
DEAD = "dead units"
NOT_LEARNED = "not learned"
LOW_LEVEL = "low-level features"
REALNESS = "critical for realness"
DIVERSITY = "critical for diversity"
IN_CONTEXT = "in-context copying"


def pct(value: float) -> str:
    return f"{value * 100:.1f} %"


def interval(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return ""
    return f"[{low * 100:.1f}, {high * 100:.1f}]"


def points(value: float) -> str:
    return f"{value * 100:.1f} points"


def num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def finding_evidence(finding: Finding, *keys: str, low: str | None = None, high: str | None = None) -> list[Evidence]:
    section = finding.id.split(".", 1)[0]
    out = []
    for key in keys:
        value = finding.evidence.get(key)
        if value is None or isinstance(value, bool):
            continue
        out.append(Evidence(section=section, key=f"finding:{finding.id}/{key}", value=value,
                            low=num(finding.evidence.get(low)) if low and key == keys[0] else None,
                            high=num(finding.evidence.get(high)) if high and key == keys[0] else None,
                            module=finding.module))
    return out
