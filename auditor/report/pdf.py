"""The PDF report: the HTML report with print CSS, laid out by WeasyPrint, fetching nothing."""

from __future__ import annotations

import logging
from typing import Any

from weasyprint import HTML
from weasyprint.urls import URLFetcher, URLFetcherResponse

from auditor.report.html import render_html
from auditor.schema.report import AuditReport


class DataOnlyFetcher(URLFetcher):  # type: ignore[misc]  # weasyprint ships no type hints
    """Serves `data:` URLs and refuses every other one; records every URL WeasyPrint asked for."""

    def __init__(self) -> None:
        super().__init__(allowed_protocols=("data",), allow_redirects=False)
        self.requested: list[str] = []

    def fetch(self, url: str, headers: Any = None) -> URLFetcherResponse:
        """Decodes a `data:` URL; raises ValueError for anything that would touch the disk or network."""
        self.requested.append(url)
        if not url.lower().startswith("data:"):
            raise ValueError(f"the report fetches nothing; refused {url[:120]!r}")
        return super().fetch(url, headers)


def render_pdf(report: AuditReport, *, fetcher: DataOnlyFetcher | None = None) -> bytes:
    """Renders the report as A4 PDF bytes; `fetcher` lets a caller see what was asked for."""
    return html_to_pdf(render_html(report, for_pdf=True), fetcher=fetcher)


def html_to_pdf(page: str, *, fetcher: DataOnlyFetcher | None = None) -> bytes:
    """Lays out one of our HTML pages (report, release diff) as PDF bytes, fetching only `data:` URLs."""
    html = HTML(string=page, url_fetcher=fetcher or DataOnlyFetcher())
    # WeasyPrint logs every CSS property it does not support (screen-only rules): keep the console clean.
    css_log = logging.getLogger("weasyprint")
    level = css_log.level
    css_log.setLevel(logging.ERROR)
    try:
        pdf = html.write_pdf()
    finally:
        css_log.setLevel(level)
    if not isinstance(pdf, bytes):
        raise TypeError(f"WeasyPrint returned {type(pdf).__name__}, not bytes")
    return pdf
