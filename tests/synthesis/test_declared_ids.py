"""The atlas reads findings by id (`view.findings(module, "ablation.critical_module")`): every id it reads must
be one an analysis declares, so that renaming a finding cannot silently empty the atlas's cards."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from auditor.analyses import ALL_ANALYSES
from auditor.engine.analysis import GENERIC_FINDINGS

SYNTHESIS = Path(__file__).resolve().parents[2] / "auditor" / "synthesis"
FINDING_ID = re.compile(r"^[a-z_]+\.[a-z_]+$")


def _declared() -> set[str]:
    ids = {f"{a.id}.{spec.condition}" for a in ALL_ANALYSES for spec in GENERIC_FINDINGS}
    for analysis in ALL_ANALYSES:
        ids |= set(analysis.findings.ids)
    return ids


def _read_ids() -> dict[str, str]:
    """Every string literal the synthesis compares with, or passes as, a finding id: `id -> where`."""
    found: dict[str, str] = {}
    for path in sorted(SYNTHESIS.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            literals: list[ast.expr] = []
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if "finding" in name:
                    literals = [*node.args, *(k.value for k in node.keywords)]
            elif isinstance(node, ast.Compare) and any(isinstance(side, ast.Attribute) and side.attr == "id"
                                                       for side in [node.left, *node.comparators]):
                literals = [node.left, *node.comparators]
            for literal in literals:
                if isinstance(literal, ast.Constant) and isinstance(literal.value, str) \
                        and FINDING_ID.match(literal.value):
                    found[literal.value] = f"{path.relative_to(SYNTHESIS.parents[1])}:{literal.lineno}"
    return found


def test_the_scan_sees_the_ids_the_atlas_reads() -> None:
    read = _read_ids()
    # the roles the atlas is built on: a scan that misses these reads nothing
    assert {"ablation.critical_module", "inventory.dead_units", "lm_ablation.critical"} <= set(read)


def test_every_finding_id_the_atlas_reads_is_declared_by_an_analysis() -> None:
    declared = _declared()
    undeclared = {fid: where for fid, where in _read_ids().items() if fid not in declared}
    assert not undeclared, f"the synthesis reads findings no analysis declares: {undeclared}"
