"""The HTML report in headless Chromium: no errors, no requests, sorting and filtering work, no injection."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from auditor.schema.report import AuditReport
from tests.conftest import PageLog, open_page

pytestmark = pytest.mark.browser

PARAMS_COLUMN = 2  # name, type, params, ...


@pytest.fixture(scope="module")
def opened(browser: Any, sample_html: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, PageLog]]:
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(sample_html, encoding="utf-8")
    page, log = open_page(browser, path)
    yield page, log
    page.close()


def _params(page: Any) -> list[float | None]:
    raw = page.eval_on_selector_all(
        "#module-table tbody tr", f"rows => rows.map(r => r.cells[{PARAMS_COLUMN}].dataset.sort)")
    return [float(value) if value else None for value in raw]


def _visible_rows(page: Any) -> int:
    return int(page.eval_on_selector_all("#module-table tbody tr", "rows => rows.filter(r => !r.hidden).length"))


def test_page_loads_without_errors_or_requests(opened: tuple[Any, PageLog]) -> None:
    page, log = opened
    assert page.title().startswith("Audit:")
    assert log.errors == []
    assert log.requests and all(url.startswith(("file:", "data:")) for url in log.requests), log.requests


def test_injected_markup_did_not_run(opened: tuple[Any, PageLog]) -> None:
    page, _ = opened
    assert page.evaluate("window.__pwned === undefined")
    assert page.eval_on_selector_all("script", "s => s.length") == 1
    assert "<script>alert(1)</script>" in page.inner_text("h1")  # shown as text


def test_clicking_params_sorts_and_a_second_click_reverses(opened: tuple[Any, PageLog],
                                                           sample_report: AuditReport) -> None:
    page, log = opened
    header = page.locator("#module-table th[data-key=params]")
    header.click()
    values = _params(page)
    assert values == sorted((row.params for row in sample_report.modules), reverse=True)
    assert header.get_attribute("aria-sort") == "descending"
    header.click()
    assert _params(page) == values[::-1]
    assert header.get_attribute("aria-sort") == "ascending"
    page.locator("#module-table th[data-key=mean]").click()  # blanks (None stats) stay last
    means = page.eval_on_selector_all("#module-table tbody tr", "rows => rows.map(r => r.cells[7].dataset.sort)")
    filled = [float(v) for v in means if v]
    assert filled == sorted(filled, reverse=True) and means[len(filled):] == [""] * (len(means) - len(filled))
    assert header.get_attribute("aria-sort") is None
    assert log.errors == []


def test_filters_narrow_the_module_table(opened: tuple[Any, PageLog], sample_report: AuditReport) -> None:
    page, log = opened
    total = len(sample_report.modules)
    assert _visible_rows(page) == total
    page.fill("#module-filter", "LAYERS.1")
    expected = sum(1 for row in sample_report.modules if "layers.1" in row.name.lower())
    assert 0 < expected < total and _visible_rows(page) == expected
    assert page.inner_text("#module-count") == f"showing {expected} of {total} modules"
    page.fill("#module-filter", "")
    page.select_option("#module-type", "LayerNorm")
    expected = sum(1 for row in sample_report.modules if row.type == "LayerNorm")
    assert _visible_rows(page) == expected
    page.select_option("#module-type", "")
    assert _visible_rows(page) == total and log.errors == []


def test_section_tables_sort_too(opened: tuple[Any, PageLog]) -> None:
    page, log = opened
    table = "#table-inventory-by_type table"
    page.locator(f"{table} th", has_text="params").click()
    raw = page.eval_on_selector_all(f"{table} tbody tr", "rows => rows.map(r => r.cells[2].dataset.sort)")
    filled = [float(v) for v in raw if v]
    assert filled == sorted(filled, reverse=True) and raw[-1] == "" and log.errors == []
