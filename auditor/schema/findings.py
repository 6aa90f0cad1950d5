"""Findings are data: a stable id, a severity, the module they concern, a sentence and its numbers."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict


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
    diffs can refer to it; `message` is one plain sentence (templates escape it).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="strings")

    id: str
    severity: Severity
    module: str | None = None
    message: str
    evidence: dict[str, float | int | str | bool | None] = {}
