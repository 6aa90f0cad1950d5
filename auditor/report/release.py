"""Writing the release outputs: the diff in its formats, and the verdict as JUnit and Markdown files.

The diff's formats form a registry like the audit's (`auditor.report.renderers`): a name, a file name,
a pure function of the ReleaseDiff. Files are written atomically (`auditor.report.io.write_files`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from auditor.errors import ConfigError
from auditor.schema.diff import ReleaseDiff
from auditor.schema.verdict import PolicyVerdict
from auditor.report.io import write_files


@dataclass(frozen=True)
class DiffRenderer:
    """One output format of a release diff."""

    format: str
    filename: str
    render: Callable[[ReleaseDiff], bytes]


def _json(diff: ReleaseDiff) -> bytes:
    return (diff.model_dump_json(indent=2) + "\n").encode("utf-8")


def _html(diff: ReleaseDiff) -> bytes:
    from auditor.report.diff_html import render_diff_html

    return render_diff_html(diff).encode("utf-8")


def _pdf(diff: ReleaseDiff) -> bytes:
    from auditor.report.diff_html import render_diff_pdf

    return render_diff_pdf(diff)


def _markdown(diff: ReleaseDiff) -> bytes:
    from auditor.report.markdown import render_diff_markdown

    return render_diff_markdown(diff).encode("utf-8")


DIFF_RENDERERS: dict[str, DiffRenderer] = {r.format: r for r in (
    DiffRenderer("json", "diff.json", _json), DiffRenderer("html", "diff.html", _html),
    DiffRenderer("pdf", "diff.pdf", _pdf), DiffRenderer("md", "diff.md", _markdown),
)}


def parse_diff_formats(text: str) -> tuple[str, ...]:
    """`"json,md"` -> ("json", "md"); an unknown or empty list is a ConfigError naming the known ones."""
    formats = tuple(dict.fromkeys(f.strip() for f in text.split(",") if f.strip()))
    if not formats or any(f not in DIFF_RENDERERS for f in formats):
        raise ConfigError(f"--formats takes {', '.join(DIFF_RENDERERS)} (comma-separated), not {text!r}")
    return formats


def save_diff(diff: ReleaseDiff, out_dir: str | Path, *, formats: tuple[str, ...] = tuple(DIFF_RENDERERS)
              ) -> dict[str, Path]:
    """Writes the diff in `formats` into `out_dir` (diff.json, diff.html, diff.pdf, diff.md), atomically."""
    rendered = {DIFF_RENDERERS[f].filename: DIFF_RENDERERS[f].render(diff) for f in formats}
    paths = write_files(out_dir, rendered)
    return {f: paths[DIFF_RENDERERS[f].filename] for f in formats}


def save_verdict(verdict: PolicyVerdict, *, junit: Path | None = None, markdown: Path | None = None) -> dict[str, Path]:
    """Writes the verdict as JUnit XML and/or Markdown where asked; returns what was written."""
    from auditor.report.junit import render_junit
    from auditor.report.markdown import render_verdict_markdown

    written = {}
    for kind, path, render in (("junit", junit, render_junit), ("markdown", markdown, render_verdict_markdown)):
        if path is not None:
            written[kind] = write_files(path.parent, {path.name: render(verdict).encode("utf-8")})[path.name]
    return written


__all__ = ["DIFF_RENDERERS", "parse_diff_formats", "save_diff", "save_verdict"]
