"""The HTML report: escaped, self-contained, complete, and its helpers format numbers as promised."""

from __future__ import annotations

import base64
import hashlib
import html
import re
from pathlib import Path

import pytest
from jinja2 import DictLoader, Environment
from markupsafe import escape

from auditor.report.html import (
    GENERIC_SECTION, data_uri, format_count, format_dead, format_number, format_percent, format_shape,
    render_html, section_template_name, sort_key, templates_dir,
)
from auditor.schema.findings import Finding, Severity
from auditor.schema.report import AuditReport, Figure, Table

XSS = "<script>alert(1)</script>"
PWN = "<script>window.__pwned=1</script>"


def _module_table(page: str) -> str:
    match = re.search(r'<table id="module-table".*?</table>', page, re.S)
    assert match, "no module table"
    return match.group(0)


def _module_names(page: str) -> list[str]:
    cells = re.findall(r'<td class="name"[^>]*><code>(.*?)</code></td>', _module_table(page), re.S)
    return [html.unescape(cell.replace("<wbr>", "")) for cell in cells]


def _csp(page: str) -> str:
    match = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', page)
    assert match, "no Content-Security-Policy"
    return html.unescape(match.group(1))


def _section_block(page: str, section_id: str) -> str:
    match = re.search(rf'<section id="section-{section_id}".*?</section>', page, re.S)
    assert match, f"no section {section_id}"
    return match.group(0)


def test_hostile_text_is_escaped_everywhere(sample_html: str) -> None:
    for payload in (XSS, PWN, "<img src=x", '"quotes" & ampersands'):
        assert payload not in sample_html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in sample_html
    assert "&#34;quotes&#34; &amp; ampersands" in sample_html
    assert sample_html.count("<script") == 1  # ours, at the end of <body>
    module_table = _module_table(sample_html)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in module_table
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in _section_block(sample_html, "inventory")  # table cell


def test_nothing_external_is_referenced(sample_html: str) -> None:
    lowered = sample_html.lower()
    for marker in ("http://", "https://", "//cdn", "<link", "@import", "<iframe", "<object"):
        assert marker not in lowered
    for url in re.findall(r'\b(?:src|href)\s*=\s*"([^"]*)"', sample_html):
        assert url.startswith(("data:", "#")), url
    assert not re.search(r"url\((?!\s*['\"]?data:)", sample_html)


def test_every_figure_is_an_embedded_png(sample_html: str, sample_report: AuditReport) -> None:
    images = re.findall(r"<img\b[^>]*>", sample_html)
    n_figures = sum(len(s.figures) for s in sample_report.sections)
    assert n_figures >= 1 and len(images) == n_figures
    for tag in images:
        assert 'src="data:image/png;base64,' in tag
    figure = sample_report.section("performance").figures[0]
    assert figure.data_base64 in sample_html and figure.caption in sample_html


def test_verdict_and_every_finding_are_shown(sample_html: str, sample_report: AuditReport) -> None:
    verdict = sample_report.verdict
    assert f'class="verdict verdict-{verdict.status}"' in sample_html
    assert str(escape(verdict.headline)) in sample_html
    assert sample_report.findings and {f.severity.value for f in sample_report.findings} == {"info", "warn", "fail"}
    for finding in sample_report.findings:
        assert finding.id in sample_html
    top = sample_html.split('id="metadata"')[0]
    info = top.split('class="info-findings"')
    assert "inventory.nan_outputs" in info[0] and "inventory.unused_module" in info[1]
    assert top.index("inventory.nan_outputs") < top.index("inventory.dead_units")  # fail before warn


def test_failed_section_shows_its_error(sample_html: str, sample_report: AuditReport) -> None:
    error = sample_report.section("attribution").error
    assert error is not None
    block = _section_block(sample_html, "attribution")
    assert 'class="error-box"' in block
    assert f'<code class="error-type">{error.type}</code>' in block
    assert str(escape(error.message)) in block
    assert "<summary>Traceback</summary>" in block


def test_each_module_appears_once_in_the_module_table(sample_html: str, sample_report: AuditReport) -> None:
    names = _module_names(sample_html)
    assert len(names) == len(sample_report.modules)
    for row in sample_report.modules:
        assert names.count(row.name or "(root)") == 1, row.name
    assert f"showing {len(names)} of {len(names)} modules" in sample_html


def test_module_cells_carry_raw_numbers_for_sorting(sample_html: str, sample_report: AuditReport) -> None:
    rows = re.findall(r"<tr[^>]*>\s*<td class=\"name\".*?</tr>", _module_table(sample_html), re.S)
    params = [re.findall(r'data-sort="([^"]*)"', row)[0] for row in rows]
    assert params == [repr(row.params) for row in sample_report.modules]
    unused = next(r for r in rows if "unused_adapter<" in r.replace("<wbr>", ""))
    assert 'data-sort=""' in unused  # no stats: blank, sorted last
    assert re.search(r'<tr class="bad">\s*<td class="name"[^>]*><code>encoder\.<wbr>layers\.<wbr>2\.<wbr>ff2<', sample_html)
    assert ">3/128<" in sample_html


def test_a_bad_base64_figure_is_not_embedded(sample_report: AuditReport) -> None:
    bad = '"><script>window.__pwned=3</script>'
    section = sample_report.section("performance")
    figure = section.figures[0].model_copy(update={"data_base64": bad})
    report = sample_report.model_copy(update={"sections": [section.model_copy(update={"figures": [figure]})]})
    page = render_html(report)
    assert "window.__pwned=3" not in page and "<img" not in page
    assert "could not be embedded" in page


@pytest.mark.parametrize("data", ["", "not base64!", "iVBORw0KGgo", "iVBO\nRw==", base64.b64encode(b"GIF89a").decode()])
def test_data_uri_rejects_what_is_not_base64_png(data: str) -> None:
    assert data_uri(Figure(id="f", title="f", data_base64=data, alt="f")) == ""


def test_data_uri_accepts_a_real_png(sample_report: AuditReport) -> None:
    figure = sample_report.section("performance").figures[0]
    assert data_uri(figure) == f"data:image/png;base64,{figure.data_base64}"


def test_pdf_flavour_has_no_script_and_no_controls(sample_report: AuditReport) -> None:
    page = render_html(sample_report, for_pdf=True)
    assert "<script" not in page and 'id="module-filter"' not in page
    assert "script-src 'none';" in _csp(page)


def test_the_script_is_allowed_by_its_hash_only(sample_html: str) -> None:
    script = re.search(r"<script>(.*?)</script>", sample_html, re.S)
    assert script
    digest = base64.b64encode(hashlib.sha256(script.group(1).encode()).digest()).decode()
    csp = _csp(sample_html)
    assert f"script-src 'sha256-{digest}';" in csp
    assert csp.startswith("default-src 'none';") and "unsafe-eval" not in csp


def test_contents_link_to_every_section(sample_html: str, sample_report: AuditReport) -> None:
    for section in sample_report.sections:
        assert f'href="#section-{section.id}"' in sample_html
        assert f'<section id="section-{section.id}"' in sample_html
    order = [sample_html.index(f'<section id="section-{s.id}"') for s in sample_report.sections]
    assert order == sorted(order) and sample_html.index('id="modules"') < order[0]


def test_metadata_card(sample_html: str, sample_report: AuditReport) -> None:
    meta = sample_report.metadata
    assert meta.weights_sha256 and f'title="{meta.weights_sha256}">{meta.weights_sha256[:12]}…</code>' in sample_html
    for text in (meta.torch_version, meta.transformers_version, meta.python_version, meta.device, meta.created_at):
        assert text and text in sample_html
    for stage in meta.stage_seconds:
        assert f'<span class="stage-name">{stage}</span>' in sample_html
    assert "heldout_accuracy" in sample_html


def test_section_templates_fall_back_to_the_generic_one() -> None:
    env = Environment(loader=DictLoader({GENERIC_SECTION: "g", "sections/ablation.html.j2": "a"}))
    assert section_template_name(env, "ablation") == "sections/ablation.html.j2"
    assert section_template_name(env, "probes") == GENERIC_SECTION
    assert section_template_name(env, "../report") == GENERIC_SECTION


def test_templates_dir_holds_every_template() -> None:
    root = templates_dir()
    for name in ("report.html.j2", "_macros.html.j2", GENERIC_SECTION, "css/screen.css", "css/print.css", "js/report.js"):
        assert (root / name).is_file(), name


@pytest.mark.parametrize("layout", ["wheel", "checkout"])
def test_templates_dir_finds_the_wheel_or_the_checkout_layout(layout: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import auditor.report.html as module

    root = tmp_path / "auditor" / "templates" if layout == "wheel" else tmp_path / "templates"
    root.mkdir(parents=True)
    (root / "report.html.j2").write_text("x")
    monkeypatch.setattr(module, "__file__", str(tmp_path / "auditor" / "report" / "html.py"))
    assert templates_dir() == root.resolve()


def test_numbers_are_formatted_compactly(sample_report: AuditReport) -> None:
    assert format_number(1.23e-05) == "1.23e-05"
    assert format_number(0.123456) == "0.123" and format_number(12.345) == "12.3" and format_number(0.0) == "0"
    assert format_number(1_204_226.0) == "1,204,226" and format_number(float("nan")) == "NaN"
    assert format_count(812) == "812" and format_count(12_345) == "12.3k" and format_count(1_204_226) == "1.2M"
    assert format_count(66_000) == "66k"
    assert format_percent(0.1234) == "12.3%" and format_percent(None) == ""
    assert format_shape([None, None, 128]) == "(*, *, 128)" and format_shape(None) == ""
    assert sort_key(None) == "" and sort_key(float("inf")) == "Infinity" and sort_key(True) == ""
    act = next(r for r in sample_report.modules if r.name == "encoder.layers.1.act")
    assert format_dead(act) == "3/128"


def test_all_zero_units_that_are_not_dead_are_noted_not_flagged(sample_report: AuditReport) -> None:
    rows = [r.model_copy(update={"zero_units": 64, "dead_units": 0, "pruned_units": 0, "units": 128})
            if r.name == "encoder.layers.0.act" else
            r.model_copy(update={"zero_units": 9, "dead_units": 3, "pruned_units": 4})
            if r.name == "encoder.layers.1.act" else r for r in sample_report.modules]
    page = render_html(sample_report.model_copy(update={"modules": rows}))

    table = _module_table(page)
    structural = re.search(r'<tr class="">\s*<td class="name"[^>]*><code>encoder\.<wbr>layers\.<wbr>0\.<wbr>act<.*?</tr>',
                           table, re.S)
    assert structural and '0/128<span class="dead-note">64 zero</span>' in structural.group(0)
    assert '3/128<span class="dead-note">4 pruned, 2 zero</span>' in table


def test_empty_evidence_is_not_shown(sample_report: AuditReport) -> None:
    finding = Finding(id="inventory.dead_units", severity=Severity.WARN, module="encoder.layers.1.act",
                      message="3 of 128 units never activate.",
                      evidence={"dead_units": 3, "also_seen_as": "", "note": None})
    inventory = sample_report.section("inventory")
    sections = [s.model_copy(update={"findings": [finding]}) if s.id == "inventory" else s
                for s in sample_report.sections]
    page = render_html(sample_report.model_copy(update={"sections": sections}))

    block = _section_block(page, inventory.id)
    assert '<span class="evidence-key">dead units</span> 3' in block
    assert "also_seen_as" not in block and '<span class="evidence-key">note</span>' not in block


def test_a_table_column_has_one_number_format(sample_report: AuditReport) -> None:
    table = Table(id="by_type", title="Modules by type", columns=["type", "count", "leaf time %"],
                  rows=[["Linear", 4, 41.2], ["ReLU", 3, 0.84], ["Dropout", 2, 0.05], ["Identity", 1, 0.0],
                        ["Flatten", 1, None]])
    sections = [s.model_copy(update={"tables": [table]}) if s.id == "inventory" else s for s in sample_report.sections]
    page = render_html(sample_report.model_copy(update={"sections": sections}))

    cells = re.findall(r'<td class="num" data-sort="[^"]*">([^<]*)</td>', _section_block(page, "inventory"))
    assert cells == ["4", "41.20", "3", "0.84", "2", "0.05", "1", "0.00", "1", ""]
    assert "e-0" not in "".join(cells)


def test_a_p_value_that_underflowed_reads_below_1e_16_never_0() -> None:
    from auditor.report.html import format_cell, format_metric
    from auditor.schema.diff import format_p

    assert format_metric(0.0, "binomial_p_value") == "< 1e-16"
    assert format_metric(3e-20, "deletion_p/gradient") == "< 1e-16"
    assert format_metric(0.0, "flip_rate") == "0"  # a rate of 0 is a 0
    assert format_cell(0.0, 4, "p (deletion)") == "< 1e-16" and format_cell(0.0, 4, "drop (pts)") == "0.0000"
    assert format_p(0.0) == "< 1e-16" and format_p(0.031) == "0.031"


def test_metric_cards_are_labelled_for_a_reader_not_by_raw_keys() -> None:
    from auditor.report.html import metric_label

    assert metric_label("binomial_p_value") == "binomial p-value"
    assert metric_label("deletion_auc/integrated_gradients") == "deletion AUC (integrated gradients)"
    assert metric_label("ece") == "ECE" and metric_label("macro_f1") == "macro F1"
    assert metric_label("reference_deletion_p/occlusion") == "reference deletion p-value (occlusion)"
    assert metric_label("max_drop") == "largest accuracy drop (fraction)"  # beside tables in points


def test_a_section_that_measured_nothing_is_not_shown_ok() -> None:
    from auditor.report.html import section_status
    from auditor.schema.report import Section

    empty = Section(id="performance", title="Performance", summary="Not measured: the model is a bare encoder.")
    assert (section_status(empty).level, section_status(empty).label) == ("info", "not measured")
    measured = Section(id="performance", title="Performance", metrics={"accuracy": 0.9})
    assert section_status(measured).label == "ok"


def test_dotted_names_in_table_cells_break_at_their_dots_and_stay_escaped() -> None:
    from auditor.report.html import breakable

    assert str(breakable("encoder.layer.2.attention")) == "encoder.<wbr>layer.<wbr>2.<wbr>attention"
    assert str(breakable("a.<b>")) == "a.<wbr>&lt;b&gt;"
    assert breakable("better than random.") == "better than random."  # a sentence is left alone
