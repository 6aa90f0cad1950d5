"""Every section template extends the one base section and writes no `<section>` of its own."""

from __future__ import annotations

import re

from auditor.report.html import templates_dir


def test_every_section_template_extends_the_base() -> None:
    sections = templates_dir() / "sections"
    templates = sorted(p for p in sections.glob("*.html.j2") if p.name != "_base.html.j2")
    assert templates
    for path in templates:
        text = re.sub(r"\{#.*?#\}", "", path.read_text(encoding="utf-8"), flags=re.S).lstrip()
        assert text.startswith('{% extends "sections/_base.html.j2" %}'), path.name
        assert "<section" not in text, path.name
