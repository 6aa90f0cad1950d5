"""Saving and loading reports. Saving is atomic: every file is rendered first, then each one replaces
its old version with os.replace, so a crash never leaves a half-written report in place of a good one."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from pydantic import ValidationError

from auditor.errors import AuditorError
from auditor.report.renderers import DEFAULT_FORMATS, RENDERERS
from auditor.schema.report import SCHEMA_VERSION, AuditReport


def save_report(report: AuditReport, out_dir: str | Path, *,
                formats: tuple[str, ...] = DEFAULT_FORMATS) -> dict[str, Path]:
    """Writes the report in `formats` (audit.json, report.html, report.pdf) into `out_dir`, atomically.

    Renders every format in memory, writes temporaries beside the targets, then renames them in.
    Returns the written paths by format.
    """
    unknown = [fmt for fmt in formats if fmt not in RENDERERS]
    if unknown:
        raise ValueError(f"unknown report formats {unknown}; known: {list(RENDERERS)}")
    rendered = {fmt: RENDERERS[fmt].render(report) for fmt in formats}  # all rendering before any write
    paths = write_files(out_dir, {RENDERERS[fmt].filename: payload for fmt, payload in rendered.items()})
    return {fmt: paths[RENDERERS[fmt].filename] for fmt in formats}


def write_files(out_dir: str | Path, payloads: dict[str, bytes]) -> dict[str, Path]:
    """Writes `{file name: bytes}` into `out_dir` atomically: all temporaries first, then each renamed in.

    Returns the written paths by file name.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise AuditorError(f"cannot create output folder {out}: {err}") from None
    temporaries: dict[str, Path] = {}
    umask = os.umask(0)
    os.umask(umask)
    try:
        for name, payload in payloads.items():
            fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=out)
            os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; a report is as readable as any file
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            temporaries[name] = Path(tmp_name)
        paths = {}
        for name, tmp in temporaries.items():
            target = out / name
            os.replace(tmp, target)
            paths[name] = target
        return paths
    finally:
        for tmp in temporaries.values():
            tmp.unlink(missing_ok=True)


def load_report(path: str | Path) -> AuditReport:
    """Reads an audit.json (or the folder holding one); a wrong or newer schema is a clear error."""
    path = Path(path)
    if path.is_dir():
        path = path / RENDERERS["json"].filename
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
        report = AuditReport.model_validate(raw)
    except ValidationError as err:
        raise AuditorError(f"{path} is not a valid audit: {err.errors()[0]['msg']}") from None
    if report.policy is not None and report.verdict.decided_by != "policy":
        report = report.with_policy(report.policy)  # written before the gate's result was the headline
    return report
