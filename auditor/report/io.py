"""Saving and loading reports. Saving is atomic: every file is rendered first, then each one replaces
its old version with os.replace, so a crash never leaves a half-written report in place of a good one."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from pydantic import ValidationError

from auditor.errors import AuditorError
from auditor.report.schema import SCHEMA_VERSION, AuditReport

FILENAMES = {"json": "audit.json", "html": "report.html", "pdf": "report.pdf"}


def render_json(report: AuditReport) -> str:
    return report.model_dump_json(indent=2) + "\n"


def _render(report: AuditReport, fmt: str) -> bytes:
    if fmt == "json":
        return render_json(report).encode("utf-8")
    if fmt == "html":
        from auditor.report.html import render_html

        return render_html(report).encode("utf-8")
    if fmt == "pdf":
        from auditor.report.pdf import render_pdf

        return render_pdf(report)
    raise ValueError(f"unknown report format {fmt!r}; known: {sorted(FILENAMES)}")


def save_report(report: AuditReport, out_dir: str | Path, *,
                formats: tuple[str, ...] = ("json", "html", "pdf")) -> dict[str, Path]:
    """Renders every format in memory, writes temporaries beside the targets, then renames them in."""
    out = Path(out_dir)
    rendered = {fmt: _render(report, fmt) for fmt in formats}  # all rendering before any write
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise AuditorError(f"cannot create output folder {out}: {err}") from None
    temporaries: dict[str, Path] = {}
    umask = os.umask(0)
    os.umask(umask)
    try:
        for fmt, payload in rendered.items():
            fd, tmp_name = tempfile.mkstemp(prefix=f".{FILENAMES[fmt]}.", suffix=".tmp", dir=out)
            os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; a report is as readable as any file
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            temporaries[fmt] = Path(tmp_name)
        paths = {}
        for fmt, tmp in temporaries.items():
            target = out / FILENAMES[fmt]
            os.replace(tmp, target)
            paths[fmt] = target
        return paths
    finally:
        for tmp in temporaries.values():
            tmp.unlink(missing_ok=True)


def load_report(path: str | Path) -> AuditReport:
    """Reads an audit.json (or the folder holding one); a wrong or newer schema is a clear error."""
    path = Path(path)
    if path.is_dir():
        path = path / FILENAMES["json"]
    if not path.is_file():
        raise AuditorError(f"audit not found: {path}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AuditorError(f"{path} is not valid JSON: {err}") from None
    found = str(raw.get("schema_version", "?")) if isinstance(raw, dict) else "?"
    if found.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise AuditorError(f"{path} has audit schema {found}; this auditor reads {SCHEMA_VERSION}")
    try:
        return AuditReport.model_validate(raw)
    except ValidationError as err:
        raise AuditorError(f"{path} is not a valid audit: {err.errors()[0]['msg']}") from None
