"""The role rules: each reads one line of evidence for one module and, when its own test passed, gives a tag
with the clause that says it, every number cited with its section and key (docs/atlas.md lists the rules)."""

from __future__ import annotations

from collections.abc import Callable

from auditor.schema.cards import Clause
from auditor.synthesis.roles.common import (CRITICAL, DEAD, DIVERSITY, IN_CONTEXT, LOW_LEVEL, MAIN_PATH, NOT_LEARNED,
                                            PRUNABLE, REALNESS, REDUNDANT, UNUSED, interval, pct, points)
from auditor.synthesis.roles.lm import lm_roles
from auditor.synthesis.roles.probes import beats_random_init, carries, passes_probe, probe_reading
from auditor.synthesis.roles.removal import (Ablation, ablation_of, class_specific, critical, judge_roles, main_path,
                                             prunable, redundant, unused)
from auditor.synthesis.roles.units import dead_units, not_learned
from auditor.synthesis.view import AuditView

Rule = Callable[[AuditView, str], list[Clause]]
RULES: tuple[Rule, ...] = (main_path, class_specific, judge_roles, carries, critical, lm_roles, redundant, prunable,
                           unused, dead_units, not_learned)
"""In the order a card states them."""


__all__ = ["CRITICAL", "DEAD", "DIVERSITY", "IN_CONTEXT", "LOW_LEVEL", "MAIN_PATH", "NOT_LEARNED", "PRUNABLE",
           "REALNESS", "REDUNDANT", "RULES", "UNUSED", "Ablation", "ablation_of", "beats_random_init", "interval", "passes_probe",
           "pct", "points", "probe_reading"]

