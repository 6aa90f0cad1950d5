"""Findings are data: a stable id, a severity, the module they concern, a sentence and its numbers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

ABOUT = ("property", "class", "head", "unit", "call", "method")
"""Evidence entries that say what a finding is about, beside its module: two findings with the same id on
the same module (a probe's peak for two properties) differ in one of these."""


class Severity(str, Enum):
    """How much a finding matters for a release; ordered info < warn < fail."""

    INFO = "info"
    WARN = "warn"
    FAIL = "fail"

    @property
    def rank(self) -> int:
        return {"info": 0, "warn": 1, "fail": 2}[self.value]


class Finding(BaseModel):
    """One statement about the model, with the numbers it is made of.

    `id` is `<analysis id>.<condition>` and stays stable across releases, so policies and release
    diffs can refer to it; `message` is one plain sentence (templates escape it). `key` names the finding
    across releases: its id, its module and what it is about (`finding_key`); waivers, `fail_on_new` and
    `auditor diff` match findings by it. Derived when absent, so audit.json files written before it load.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="strings")

    id: str
    severity: Severity
    module: str | None = None
    message: str
    evidence: dict[str, float | int | str | bool | None] = {}
    key: str = ""

    @model_validator(mode="before")
    @classmethod
    def _derive_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("key") and "id" in data:
            data = {**data, "key": finding_key(data["id"], data.get("module"), data.get("evidence") or {})}
        return data


def finding_key(id: str, module: str | None, evidence: dict[str, Any]) -> str:
    """`<id>`, then ` on <module>` (`(model)` for the model itself), then `[property=orientation]` for each
    entry of the evidence in ABOUT: `probes.peak_layer on features.relu1 [property=orientation]`."""
    key = id if module is None else f"{id} on {module or '(model)'}"
    about = [f"{name}={evidence[name]}" for name in ABOUT if isinstance(evidence.get(name), (str, int))
             and not isinstance(evidence.get(name), bool)]
    return key + (f" [{', '.join(about)}]" if about else "")


class DefaultRule:
    """One `[[rule]]` of the default policy (`auditor policy init`), as data: its name, then its keys in the
    order they are written, each with an optional comment (`comments`, by key).

    A finding rule leaves out `findings`: the declarations that name the rule (`FindingSpec.rule`) fill it in,
    in their order. A metric rule names its `metric` or `module_metric` and is declared by its analysis
    (`Analysis.default_rules`).
    """

    def __init__(self, name: str, *, comments: dict[str, str] | None = None, **keys: str | float | bool | list[str]) -> None:
        self.name = name
        self.keys = dict(keys)
        self.comments = dict(comments or {})
        unknown = set(self.comments) - set(self.keys) - {"findings"}
        if unknown:
            raise ValueError(f"rule {name!r}: comments on keys it does not set: {sorted(unknown)}")

    def __repr__(self) -> str:
        return f"DefaultRule({self.name!r})"


@dataclass(frozen=True)
class FindingSpec:
    """One finding an analysis may give: its condition (the id after `<analysis>.`), its severity, the
    condition as a sentence (`when`, for docs/findings.md) and the default policy rule that covers it.

    `also` lists the other severities the analysis may give it (say when in `severity_note`, which the docs
    show in place of the severity).
    """

    condition: str
    severity: Severity
    when: str
    rule: DefaultRule | None = None
    also: tuple[Severity, ...] = ()
    severity_note: str = ""

    def __post_init__(self) -> None:
        if self.also and not self.severity_note:
            raise ValueError(f"{self.condition}: a finding with several severities says when in severity_note")


class Findings:
    """The findings an analysis declares, and the only way its code builds one: `finding("dead_units", ...)`
    gives `<analysis>.dead_units` with its declared severity, and an undeclared condition raises."""

    def __init__(self, analysis: str, *specs: FindingSpec) -> None:
        self.analysis = analysis
        self.specs = specs
        self._by_condition = {spec.condition: spec for spec in specs}
        if len(self._by_condition) != len(specs):
            raise ValueError(f"{analysis}: a finding is declared twice")

    def id(self, condition: str) -> str:
        """`<analysis>.<condition>`, for a declared condition only."""
        return f"{self.analysis}.{self.spec(condition).condition}"

    def spec(self, condition: str) -> FindingSpec:
        try:
            return self._by_condition[condition]
        except KeyError:
            raise KeyError(f"{self.analysis}.{condition} is not declared; declared: {sorted(self._by_condition)}") \
                from None

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(f"{self.analysis}.{condition}" for condition in self._by_condition)

    def finding(self, condition: str, *, message: str, module: str | None = None,
                evidence: Mapping[str, float | int | str | bool | None] | None = None,
                severity: Severity | None = None) -> Finding:
        """The finding `<analysis>.<condition>`: its declared severity unless `severity` picks one of `also`."""
        spec = self.spec(condition)
        if severity is not None and severity is not spec.severity and severity not in spec.also:
            raise ValueError(f"{self.analysis}.{condition} is declared {spec.severity.value}, not {severity.value}")
        return Finding(id=f"{self.analysis}.{condition}", severity=severity or spec.severity, module=module,
                       message=message, evidence=dict(evidence or {}))
