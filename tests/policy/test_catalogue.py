"""docs/findings.md and the default policy are written from the analyses' declarations, and are up to date."""

from __future__ import annotations

import tomllib

from auditor.analyses import ALL_ANALYSES
from auditor.engine.analysis import GENERIC_FINDINGS
from auditor.policy import catalogue
from auditor.policy.defaults import DEFAULT_POLICY_TOML


def test_the_committed_findings_doc_and_default_policy_are_what_the_declarations_write() -> None:
    assert catalogue.main(["--check"]) == 0, "run: python -m auditor.policy.catalogue"
    assert catalogue.policy_toml() == DEFAULT_POLICY_TOML


def test_every_declared_finding_is_documented_once() -> None:
    doc = catalogue.FINDINGS_DOC.read_text(encoding="utf-8")
    for analysis in ALL_ANALYSES:
        for finding_id in analysis.findings.ids:
            assert doc.count(f"| `{finding_id}`") + doc.count(f", `{finding_id}`") == 1, finding_id
    for spec in GENERIC_FINDINGS:
        assert f"`<analysis>.{spec.condition}`" in doc


def test_every_finding_rule_of_the_default_policy_names_declared_findings() -> None:
    declared = {finding_id for analysis in ALL_ANALYSES for finding_id in analysis.findings.ids}
    rules = tomllib.loads(DEFAULT_POLICY_TOML)["rule"]
    named = [finding_id for rule in rules for finding_id in rule.get("findings", []) if finding_id != "*"]
    assert named and set(named) <= declared
    assert len({rule["name"] for rule in rules}) == len(rules)
    declared_rules = {rule.name for analysis in ALL_ANALYSES for rule in analysis.default_rules}
    declared_rules |= {spec.rule.name for analysis in ALL_ANALYSES for spec in analysis.findings.specs if spec.rule}
    assert declared_rules | {rule.name for rule in catalogue.GENERIC_RULES} == {rule["name"] for rule in rules}
