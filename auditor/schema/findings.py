"""Findings are data: a stable id, a severity, the module they concern, a sentence and its numbers."""

from __future__ import annotations

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
