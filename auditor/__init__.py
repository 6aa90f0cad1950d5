"""auditor: automated audit reports for PyTorch models.

    report = auditor.audit(model, data)      # or: auditor run --model ... --data ... --out audit/
    auditor.save_report(report, "audit/")    # audit.json, report.html, report.pdf
    verdict = auditor.evaluate_policy(report, auditor.load_policy("policy.toml"), baseline=last)  # auditor check
    diff = auditor.diff_reports(last, report)                                                     # auditor diff
"""

from auditor.config import AuditConfig
from auditor.errors import AuditorError, ConfigError, DataError, ExitCode, ModelLoadError, PolicyError
from auditor.schema.findings import Finding, Severity
from auditor.pipeline import audit, audit_generator, load_config, plan_audit, run_audit
from auditor.policy.diff import diff_reports
from auditor.schema.diff import ReleaseDiff
from auditor.policy.evaluate import evaluate_policy
from auditor.policy.load import load_policy
from auditor.policy.rules import Policy
from auditor.schema.verdict import PolicyVerdict
from auditor.report.io import load_report, save_report
from auditor.schema.report import AuditReport, Section

__all__ = [
    "AuditConfig", "AuditReport", "AuditorError", "ConfigError", "DataError", "ExitCode", "Finding",
    "ModelLoadError", "Policy", "PolicyError", "PolicyVerdict", "ReleaseDiff", "Section", "Severity", "audit",
    "audit_generator", "diff_reports", "evaluate_policy", "load_config", "load_policy", "load_report", "plan_audit", "run_audit",
    "save_report",
]
