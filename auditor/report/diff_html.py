"""The release diff as a self-contained HTML page and as PDF: the same CSS, script and escaping as the
audit report (`auditor.report.html`), its own template (`templates/diff/report.html.j2`)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from auditor.schema.diff import ClassDelta, MetricDelta, ReleaseDiff
from auditor.schema.diff import format_p
from markupsafe import Markup

from auditor.report.html import build_environment, metric_label, templates_dir
from auditor.report.pdf import DataOnlyFetcher, html_to_pdf


@dataclass(frozen=True)
class DiffStatus:
    """The banner of the diff. When the new audit was judged by a release policy, the gate's result:
    `fail` "blocked" or `pass` "gate passed". Otherwise `fail` when something got significantly worse,
    `warn` when anything changed, `pass` when nothing did."""

    level: str
    label: str


def diff_status(diff: ReleaseDiff) -> DiffStatus:
    if diff.new.gate is not None:
        return DiffStatus("fail", "blocked") if diff.new.gate == "failed" else DiffStatus("pass", "gate passed")
    deltas: list[MetricDelta | ClassDelta] = [*diff.metrics, *diff.classes]
    if any(d.delta is not None and d.delta < 0 and d.significant(diff.alpha) for d in deltas):
        return DiffStatus("fail", "worse")
    return DiffStatus("warn", "changed") if diff.changed else DiffStatus("pass", "same")


def _signed(value: float | None, percent: bool = False) -> str:
    if value is None:
        return ""
    return f"{value * 100:+.1f} pts" if percent else f"{value:+.4g}"


def _p(value: float | None) -> str:
    return "" if value is None else format_p(value)


def metric_name(section: str, key: str = "") -> Markup:
    """A metric as a reader reads it, `performance.accuracy` → "performance: accuracy (fraction)", with its key
    in the tooltip (what a policy rule or `jq` names)."""
    if not key:
        section, _, key = section.partition(".")
    full = f"{section}.{key}" if section else key
    text = f"{metric_label(section)}: {metric_label(key)}" if section else metric_label(key)
    return Markup('<span class="metric-label" title="{}">{}</span>').format(full, text)


FILTERS: dict[str, Callable[..., str]] = {"signed": _signed, "p": _p, "metric_name": metric_name}


def render_diff_html(diff: ReleaseDiff, *, for_pdf: bool = False) -> str:
    """The diff as one HTML page; `for_pdf` drops the script (sortable tables)."""
    assets = templates_dir()
    env = build_environment(assets)
    env.filters.update(FILTERS)
    css = "\n".join((assets / name).read_text(encoding="utf-8") for name in ("css/screen.css", "diff/diff.css"))
    print_css = (assets / "css" / "print.css").read_text(encoding="utf-8")
    js = "" if for_pdf else (assets / "js" / "report.js").read_text(encoding="utf-8")
    script_hash = base64.b64encode(hashlib.sha256(js.encode("utf-8")).digest()).decode("ascii")
    return env.get_template("diff/report.html.j2").render(
        diff=diff, status=diff_status(diff), for_pdf=for_pdf, css=css, print_css=print_css, js=js,
        script_src=f"'sha256-{script_hash}'" if js else "'none'",
        changed_metrics=[m for m in diff.metrics if m.changed],
        unchanged_metrics=[m for m in diff.metrics if not m.changed],
        changed_classes=sorted((c for c in diff.classes if c.changed), key=lambda c: c.delta or 0.0),
        unchanged_classes=[c for c in diff.classes if not c.changed],
    )


def render_diff_pdf(diff: ReleaseDiff, *, fetcher: DataOnlyFetcher | None = None) -> bytes:
    """The diff as A4 PDF bytes, fetching nothing but its own embedded figures."""
    return html_to_pdf(render_diff_html(diff, for_pdf=True), fetcher=fetcher)


__all__ = ["diff_status", "render_diff_html", "render_diff_pdf"]
