"""The self-contained HTML report: a pure function of `AuditReport` (no torch, nothing fetched)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from markupsafe import Markup
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from auditor.report.atlas import atlas_view, bars_svg, card_anchor, row_ids, tag_class
from auditor.schema.findings import Severity
from auditor.schema.report import AuditReport, Cell, Figure, Metadata, ModuleRow, Section, Table

GENERIC_SECTION = "sections/_generic.html.j2"
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_SECTION_ID = re.compile(r"[a-z][a-z0-9_]*")
_MAGIC = {"image/png": b"\x89PNG\r\n\x1a\n", "image/svg+xml": b""}


def templates_dir() -> Path:
    """The templates folder: `auditor/templates` in an installed wheel, `<repo>/templates` in a checkout."""
    package = Path(__file__).resolve().parents[1]  # auditor/, without importing the package
    for candidate in (package / "templates", package.parent / "templates"):
        if (candidate / "report.html.j2").is_file():
            return candidate
    raise FileNotFoundError(f"no report templates in {package / 'templates'} or {package.parent / 'templates'}")


def render_html(report: AuditReport, *, for_pdf: bool = False) -> str:
    """Renders the report as one HTML page; `for_pdf` drops the script and the interactive controls."""
    assets = templates_dir()
    env = build_environment(assets)
    css = (assets / "css" / "screen.css").read_text(encoding="utf-8") \
        + (assets / "css" / "atlas.css").read_text(encoding="utf-8")
    print_css = (assets / "css" / "print.css").read_text(encoding="utf-8")
    js = "" if for_pdf else (assets / "js" / "report.js").read_text(encoding="utf-8") \
        + (assets / "js" / "atlas.js").read_text(encoding="utf-8")
    script_hash = base64.b64encode(hashlib.sha256(js.encode("utf-8")).digest()).decode("ascii")
    sections = [(section, section_template_name(env, section.id)) for section in report.sections]
    findings = sorted(report.findings, key=lambda f: -f.severity.rank)
    compact = fits_portrait(report)
    return env.get_template("report.html.j2").render(
        report=report,
        for_pdf=for_pdf,
        css=css,
        print_css=print_css,
        js=js,
        script_src=f"'sha256-{script_hash}'" if js else "'none'",
        sections=sections,
        top_findings=[f for f in findings if f.severity is not Severity.INFO],
        info_findings=[f for f in findings if f.severity is Severity.INFO],
        anchors=_finding_anchors(report),
        module_types=sorted({row.type for row in report.modules}),
        compact_modules=compact,
        modules_last=for_pdf and not compact,
        atlas=atlas_view(report),
    )


def fits_portrait(report: AuditReport) -> bool:
    """Whether the module table is small enough for a portrait PDF page (at most 40 rows; types, shapes
    and indented names short enough not to push the 16 columns past the margin), so that a small model
    does not get a landscape page of its own left nearly empty."""
    rows = [r for row in report.modules for r in (row, *row.per_call)]  # the calls of reused modules are rows too
    return len(rows) <= 40 and max(len(r.name) + 0.8 * r.depth + (12 if r.call else 0) for r in rows) <= 30 \
        and max(len(r.type) for r in rows) <= 18 and max(len(format_shape(r.output_shape)) for r in rows) <= 16


def build_environment(directory: Path) -> Environment:
    """A Jinja environment over `directory` that escapes everything and fails on undefined names."""
    env = Environment(
        loader=FileSystemLoader(str(directory)),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        num=format_number, si=format_count, pct=format_percent, shape=format_shape,
        seconds=format_seconds, sort_key=sort_key, data_uri=data_uri, pretty_json=pretty_json,
        cell=format_cell, dead=format_dead, zero_note=zero_note, metric=format_metric, label=metric_label,
        breakable=breakable,
    )
    env.tests["nan"] = is_nan
    env.globals.update(table_kinds=table_kinds, column_decimals=column_decimals, row_flag=row_flag,
                       cost_line=cost_line, section_status=section_status, loading_notes=loading_notes,
                       card_anchor=card_anchor, tag_class=tag_class, bars_svg=bars_svg, row_ids=row_ids)
    return env


def section_template_name(env: Environment, section_id: str) -> str:
    """`sections/<id>.html.j2` when the analysis ships one, else the generic section template."""
    names = [f"sections/{section_id}.html.j2"] if _SECTION_ID.fullmatch(section_id) else []
    return str(env.select_template([*names, GENERIC_SECTION]).name)


def data_uri(figure: Figure) -> str:
    """`data:<type>;base64,<data>` for a well-formed figure, else "" (the template says it is missing)."""
    data = figure.data_base64
    if not data or len(data) % 4 or not _BASE64.fullmatch(data):
        return ""
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return ""
    if not raw.startswith(_MAGIC.get(figure.media_type, b"\0")):
        return ""
    return f"data:{figure.media_type};base64,{data}"


def format_number(value: float | int | None) -> str:
    """A compact number: 0.123, 12.3, 1234, 1.23e-05; blank for None."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if value == 0:
        return "0"
    if value.is_integer() and abs(value) < 1e15:  # counts stored as floats (metrics are floats)
        return f"{int(value):,}"
    size = abs(value)
    if 1e-3 <= size < 1e5:
        return f"{value:.4g}" if size >= 1000 else f"{value:.3g}"
    if 1e5 <= size < 1e15:
        return f"{value:,.0f}"
    return f"{value:.2e}"


def is_nan(value: object) -> bool:
    """A float NaN (the template test `is nan`)."""
    return isinstance(value, float) and math.isnan(value)


def format_count(value: int | float | None) -> str:
    """A count in k / M / B: 812, 12.3k, 1.2M."""
    if value is None:
        return ""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.1f}".removesuffix(".0") + suffix
    return f"{value:g}"


def format_percent(fraction: float | None) -> str:
    """A fraction as a percentage with one decimal; blank for None."""
    if fraction is None or math.isnan(fraction):
        return ""
    return f"{fraction * 100:.1f}%"


def format_shape(shape: list[int | None] | None) -> str:
    """An output shape with varying dimensions as `*`: (*, 128, 768)."""
    if shape is None:
        return ""
    return "(" + ", ".join("*" if d is None else str(d) for d in shape) + ")"


def format_seconds(seconds: float) -> str:
    """A duration a person reads at a glance: 12 ms, 3.4 s, 2 min 5 s."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def format_dead(row: ModuleRow) -> str:
    """Dead units as `3/64`; blank when the walk did not count units."""
    if row.dead_units is None:
        return ""
    return f"{row.dead_units}/{row.units if row.units is not None else '?'}"


def zero_note(row: ModuleRow) -> str:
    """The all-zero units that are not dead: `4 pruned`, `16 zero` (structural or passed on), or ""."""
    pruned = row.pruned_units or 0
    other = (row.zero_units or 0) - (row.dead_units or 0) - pruned
    parts = [f"{pruned} pruned"] if pruned else []
    if other > 0:
        parts.append(f"{other} zero")
    return ", ".join(parts)


P_FLOOR = 1e-16
"""p-values below this are written `< 1e-16`: a float64 tail probability that small is rounding, and a p-value of
exactly 0 is never the truth."""
_LABELS = {"max_drop": "largest accuracy drop (fraction)", "max_embedding_change": "largest embedding change (1 − cos)",
           "accuracy": "accuracy (fraction)", "majority_rate": "majority class rate (fraction)"}
"""Metric cards whose unit a reader would otherwise guess (the tables beside them may be in points)."""
_WORDS = {"p": "p", "auc": "AUC", "ig": "IG", "ece": "ECE", "nll": "NLL", "f1": "F1", "kl": "KL", "mdl": "MDL"}


def is_p_value(name: str) -> bool:
    """A metric key or column that holds a p-value: `binomial_p_value`, `deletion_p/gradient`, `p (deletion)`."""
    base = name.split("/", 1)[0].strip().lower()
    return (base in {"p", "p value", "p-value"} or base.endswith(("_p", "_p_value", " p", " p-value"))
            or base.startswith(("p (", "p-value", "p value")))


def format_p_value(value: float) -> str:
    return f"< {P_FLOOR:g}" if 0 <= value < P_FLOOR else format_number(value)


def format_metric(value: Cell, key: str = "") -> str:
    """A metric or evidence value: a p-value under 1e-16 as `< 1e-16` (never "0"), else as a cell."""
    if isinstance(value, float) and not isinstance(value, bool) and math.isfinite(value) and is_p_value(key):
        return format_p_value(value)
    return format_cell(value)


def metric_label(key: str) -> str:
    """A metric key as a reader reads it: `binomial_p_value` → `binomial p-value`, `deletion_auc/gradient` →
    `deletion AUC (gradient)`, `ece` → `ECE`."""
    name, _, qualifier = key.partition("/")
    if name in _LABELS:
        return _LABELS[name] + (f" ({qualifier.replace('_', ' ')})" if qualifier else "")
    words = [_WORDS.get(word, word) for word in name.replace("p_value", "p").split("_") if word]
    if words and words[-1] == "p":
        words[-1] = "p-value"
    text = " ".join(words)
    return f"{text} ({qualifier.replace('_', ' ')})" if qualifier else text


def breakable(value: Cell) -> Markup | str:
    """A text cell, with a line-break opportunity after each dot of a dotted name (`encoder.layer.2.attention`),
    so that a narrow column breaks it between its parts rather than mid-word."""
    text = format_cell(value)
    if " " in text or "." not in text.strip("."):
        return text
    return Markup(".<wbr>").join(text.split("."))


def format_cell(value: Cell, decimals: int | None = None, column: str = "") -> str:
    """A table cell: numbers compact (or with the column's `decimals`), booleans yes/no, None blank; in a
    p-value column, values under 1e-16 as `< 1e-16`."""
    if value is None or isinstance(value, str):
        return value or ""
    if column and isinstance(value, float) and math.isfinite(value) and is_p_value(column) and value < P_FLOOR:
        return format_p_value(value)
    if decimals is None or isinstance(value, bool) or not math.isfinite(value):
        return format_number(value)
    return f"{value:,.{decimals}f}"


def column_decimals(table: Table) -> list[int | None]:
    """Per column, the decimals every number in it is shown with, so that a column never mixes
    `5.00e-04` with `0.0084`; None for a column of whole numbers or text (compact format)."""
    decimals: list[int | None] = []
    for index, kind in enumerate(table_kinds(table)):
        cells = [row[index] for row in table.rows if index < len(row)]
        fractions = [c for c in cells if isinstance(c, float) and math.isfinite(c) and not c.is_integer()]
        if kind != "num" or not fractions:
            decimals.append(None)
            continue
        # As many decimals as the most precise cell needs (cells are rounded by their analysis), at most 4.
        decimals.append(max(len(f"{c:.4f}".rstrip("0").split(".")[1]) for c in fractions))
    return decimals


def sort_key(value: Cell) -> str:
    """The raw number a `data-sort` attribute holds; "" sorts last (None, NaN, text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return ""
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def pretty_json(value: Any) -> str:
    """Indented JSON for a <pre> block (the template escapes it)."""
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def table_kinds(table: Table) -> list[str]:
    """"num" for each column whose non-empty cells are all numbers, else "text"."""
    kinds = []
    for index in range(len(table.columns)):
        cells = [row[index] for row in table.rows if index < len(row) and row[index] is not None]
        numeric = bool(cells) and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in cells)
        kinds.append("num" if numeric else "text")
    return kinds


def row_flag(row: ModuleRow) -> str:
    """The CSS class of a module row: `bad` with NaN/Inf outputs, `dead` with dead units."""
    if row.nan_count or row.inf_count:
        return "bad"
    return "dead" if row.dead_units else ""


def cost_line(section: Section) -> str:
    """What a section cost: `2 forward / 1 backward passes, 3.4 s`."""
    cost = section.cost
    passes = f"{round(cost.forwards, 2):g} forward / {round(cost.backwards, 2):g} backward passes, " \
             f"{format_seconds(section.seconds)}"
    return f"{passes} ({cost.note})" if cost.note else passes


@dataclass(frozen=True)
class SectionStatus:
    """What the table of contents and a section header show: worst severity and a label."""

    level: str
    label: str


def section_status(section: Section) -> SectionStatus:
    """`error`, else the worst finding severity with its count, else `NaN` for a NaN metric, else `not measured`
    for a section that measured nothing (no metric, table, figure, per-module number or finding: a bare
    encoder's performance), else `ok`."""
    if section.error is not None:
        return SectionStatus("fail", "error")
    worst = max((f.severity for f in section.findings), key=lambda s: s.rank, default=None)
    if worst is None and not (section.metrics or section.tables or section.figures or section.module_metrics):
        return SectionStatus("info", "not measured")
    if worst is None or worst is Severity.INFO:
        if any(is_nan(value) for value in section.metrics.values()):
            return SectionStatus("fail", "NaN")  # an audit.json written before NaN metrics became findings
        return SectionStatus("pass", "ok")
    n = sum(1 for f in section.findings if f.severity is worst)
    return SectionStatus(worst.value, f"{n} {worst.value}")


_PREFIX_SOURCES = {"module.": "nn.DataParallel and DDP", "_orig_mod.": "torch.compile", "model.": "Lightning"}


def loading_notes(meta: Metadata) -> list[str]:
    """Sentences on what loading did beyond a plain read: checkpoint wrapper, key prefix, filled keys,
    skipped data files."""
    notes = []
    loading = meta.weights_loading
    if loading is not None and loading.wrapper_key:
        others = _some(loading.wrapper_other_keys, shown=6)
        notes.append(f"The weights file is a checkpoint dict: its state_dict was read from '{loading.wrapper_key}'"
                     + (f"; its other entries ({others}) were not used." if others else "."))
    if loading is not None and loading.stripped_prefix:
        parts = [p + "." for p in loading.stripped_prefix.split(".") if p]
        sources = ", ".join(_PREFIX_SOURCES.get(p, "a wrapper") for p in parts)
        notes.append(f"Every key of the file began with '{loading.stripped_prefix}' (as {sources} save them) "
                     "and no key of the model does: the prefix was removed before loading.")
    if loading is not None and loading.filled_keys:
        keys = loading.filled_keys
        counters = all(k.endswith("num_batches_tracked") for k in keys)
        notes.append(f"{len(keys)} entr{'ies' if len(keys) != 1 else 'y'} of the model absent from the file "
                     f"{'were' if len(keys) != 1 else 'was'} filled in by torch's strict load_state_dict"
                     + (" (BatchNorm's num_batches_tracked counters, which state dicts saved before torch 0.4.1 "
                        "lack; they do not affect inference)" if counters else "")
                     + f": {_some(keys)}.")
    if meta.data_skipped_count:
        n = meta.data_skipped_count
        notes.append(f"{n} file{'s' * (n != 1)} in the image folder {'are' if n != 1 else 'is'} not "
                     f"{'images' if n != 1 else 'an image'} and {'were' if n != 1 else 'was'} skipped: "
                     f"{_some(meta.data_skipped_files, total=n)}.")
    return notes


def _some(items: list[str], *, shown: int = 3, total: int | None = None) -> str:
    """`a, b, c and 4 more`: the first few of a list and how many were left out."""
    total = len(items) if total is None else total
    head = ", ".join(items[:shown])
    return f"{head} and {total - min(shown, len(items))} more" if total > shown else head


def _finding_anchors(report: AuditReport) -> dict[str, str]:
    """Finding id → the anchor of the section it came from (its id prefix)."""
    ids = {section.id for section in report.sections}
    return {f.id: f"section-{f.id.split('.')[0]}" for f in report.findings if f.id.split(".")[0] in ids}
