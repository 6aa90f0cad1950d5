"""auditor: automated audit reports for PyTorch models.

    report = auditor.audit(model, data)      # or: auditor run --model ... --data ... --out audit/
    auditor.save_report(report, "audit/")    # audit.json, report.html, report.pdf
    verdict = auditor.evaluate_policy(report, auditor.load_policy("policy.toml"), baseline=last)  # auditor check
    diff = auditor.diff_reports(last, report)                                                     # auditor diff

The names below are imported on first use (PEP 562), so that `auditor check`, `card` and `diff`, which read
audit.json files, start without importing torch; `import auditor` alone imports nothing heavy.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from auditor.config import AuditConfig
    from auditor.errors import AuditorError, ConfigError, DataError, ExitCode, ModelLoadError, PolicyError
    from auditor.pipeline import audit, audit_generator, load_config, plan_audit, run_audit
    from auditor.policy.diff import diff_reports
    from auditor.policy.evaluate import evaluate_policy
    from auditor.policy.load import load_policy
    from auditor.policy.rules import Policy
    from auditor.report.io import load_report, save_report
    from auditor.schema.diff import ReleaseDiff
    from auditor.schema.findings import Finding, Severity
    from auditor.schema.report import AuditReport, Section
    from auditor.schema.verdict import PolicyVerdict

_WHERE = {
    "AuditConfig": "auditor.config",
    "AuditorError": "auditor.errors", "ConfigError": "auditor.errors", "DataError": "auditor.errors",
    "ExitCode": "auditor.errors", "ModelLoadError": "auditor.errors", "PolicyError": "auditor.errors",
    "audit": "auditor.pipeline", "audit_generator": "auditor.pipeline", "load_config": "auditor.pipeline",
    "plan_audit": "auditor.pipeline", "run_audit": "auditor.pipeline",
    "diff_reports": "auditor.policy.diff", "evaluate_policy": "auditor.policy.evaluate",
    "load_policy": "auditor.policy.load", "Policy": "auditor.policy.rules",
    "load_report": "auditor.report.io", "save_report": "auditor.report.io",
    "ReleaseDiff": "auditor.schema.diff", "Finding": "auditor.schema.findings", "Severity": "auditor.schema.findings",
    "AuditReport": "auditor.schema.report", "Section": "auditor.schema.report",
    "PolicyVerdict": "auditor.schema.verdict",
}

__all__ = [
    "AuditConfig", "AuditReport", "AuditorError", "ConfigError", "DataError", "ExitCode", "Finding",
    "ModelLoadError", "Policy", "PolicyError", "PolicyVerdict", "ReleaseDiff", "Section", "Severity", "audit",
    "audit_generator", "diff_reports", "evaluate_policy", "load_config", "load_policy", "load_report", "plan_audit",
    "run_audit", "save_report",
]


def __getattr__(name: str) -> Any:
    """`auditor.audit`, `auditor.Finding`, ...: imported from their module on first use."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'auditor' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
