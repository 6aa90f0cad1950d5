"""The atlas in headless Chromium: it loads without errors, search and the tag filter narrow the tree, and a
tag link opens the collapsed card it points to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from auditor.report.html import render_html
from tests.conftest import open_page
from tests.synthesis.test_role_rules import _tagged

pytestmark = pytest.mark.browser


def test_the_atlas_filters_by_tag_and_name_and_opens_a_linked_card(browser: Any, tmp_path: Path) -> None:
    report = _tagged({"one": "main path", "two": "dead units", "three": "dead units"})
    report = report.model_copy(update={"metadata": report.metadata.model_copy(update={"config": {
        "cards": {"full_cards": 1}}})})
    path = tmp_path / "report.html"
    path.write_text(render_html(report), encoding="utf-8")
    page, log = open_page(browser, path)
    try:
        assert log.errors == []
        visible = "nodes => nodes.filter(n => !n.classList.contains('hidden')).map(n => n.dataset.module)"
        assert page.eval_on_selector_all(".atlas-node", visible) == ["one", "two", "three"]
        page.select_option("#atlas-tag", "dead units")
        assert page.eval_on_selector_all(".atlas-node", visible) == ["two", "three"]
        page.fill("#atlas-search", "thr")
        assert page.eval_on_selector_all(".atlas-node", visible) == ["three"]
        assert page.inner_text("#atlas-count") == "1 of 3 modules"
        page.fill("#atlas-search", "")
        page.select_option("#atlas-tag", "")
        full = page.eval_on_selector_all(".atlas-cards .module-card", "cards => cards.map(c => c.dataset.module)")
        assert len(full) == 1
        hidden = next(n for n in ("one", "two", "three") if n not in full)
        page.eval_on_selector(f".atlas-node[data-module='{hidden}'] > details", "d => d.open = false")
        page.click(f".atlas-node[data-module='{hidden}'] summary a.tag")
        assert page.eval_on_selector(f"#card-{hidden}", "c => c.closest('details').open") is True
        assert log.errors == []
    finally:
        page.close()
