"""Every output format in one registry: a format name, its file name, and a pure function of the report.

`auditor run --formats`, `save_report` and the CLI's help all read this table; adding a format (JUnit,
Markdown) is one entry here. Renderers import their heavy dependencies (Jinja, WeasyPrint) only when used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from auditor.errors import ConfigError
from auditor.schema.report import AuditReport


@dataclass(frozen=True)
class Renderer:
    """One output format of an audit."""

    format: str
    filename: str
    description: str
    render: Callable[[AuditReport], bytes]


def _json(report: AuditReport) -> bytes:
    return (report.model_dump_json(indent=2) + "\n").encode("utf-8")


def _html(report: AuditReport) -> bytes:
    from auditor.report.html import render_html

    return render_html(report).encode("utf-8")


def _pdf(report: AuditReport) -> bytes:
    from auditor.report.pdf import render_pdf

    return render_pdf(report)


RENDERERS: dict[str, Renderer] = {r.format: r for r in (
    Renderer("json", "audit.json", "the audit as data (schema-versioned; what check and diff read)", _json),
    Renderer("html", "report.html", "self-contained report, sortable tables, fetches nothing", _html),
    Renderer("pdf", "report.pdf", "the same report laid out for print", _pdf),
)}
DEFAULT_FORMATS: tuple[str, ...] = ("json", "html", "pdf")


def parse_formats(text: str) -> tuple[str, ...]:
    """`"json,html"` -> ("json", "html"); an unknown or empty list is a ConfigError naming the known ones."""
    formats = tuple(dict.fromkeys(f.strip() for f in text.split(",") if f.strip()))
    unknown = [f for f in formats if f not in RENDERERS]
    if unknown or not formats:
        raise ConfigError(f"--formats takes {', '.join(RENDERERS)} (comma-separated), not {text!r}")
    return formats
