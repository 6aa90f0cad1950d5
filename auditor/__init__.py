"""auditor: automated audit reports for PyTorch models.

    report = auditor.audit(model, data)      # or: auditor run --model ... --data ... --out audit/
    auditor.save_report(report, "audit/")    # audit.json, report.html, report.pdf
"""

from auditor.config import AuditConfig, load_config
from auditor.errors import AuditorError, ConfigError, DataError, ExitCode, ModelLoadError
from auditor.findings import Finding, Severity
from auditor.pipeline import audit, plan_audit, run_audit
from auditor.report.io import load_report, save_report
from auditor.report.schema import AuditReport, Section

__all__ = [
    "AuditConfig", "AuditReport", "AuditorError", "ConfigError", "DataError", "ExitCode", "Finding",
    "ModelLoadError", "Section", "Severity", "audit", "load_config", "load_report", "plan_audit", "run_audit",
    "save_report",
]
