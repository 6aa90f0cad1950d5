"""The PDF report: a real PDF, A4 pages (landscape for the module table), and nothing fetched."""

from __future__ import annotations

import re
import zlib

import pytest
from weasyprint import HTML

from auditor.report.pdf import DataOnlyFetcher, render_pdf
from auditor.report.schema import AuditReport

A4_PORTRAIT = (595.28, 841.89)


def _pdf_text(pdf: bytes) -> bytes:
    """The PDF's bytes with every zlib stream inflated (WeasyPrint packs objects into streams)."""
    parts = [pdf]
    for match in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        try:
            parts.append(zlib.decompress(match.group(1)))
        except zlib.error:
            continue
    return b"\n".join(parts)


def _page_sizes(pdf: bytes) -> list[tuple[float, float]]:
    boxes = re.findall(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]", _pdf_text(pdf))
    return [(round(float(w), 2), round(float(h), 2)) for w, h in boxes]


@pytest.fixture(scope="module")
def rendered(sample_report: AuditReport) -> tuple[bytes, DataOnlyFetcher]:
    fetcher = DataOnlyFetcher()
    return render_pdf(sample_report, fetcher=fetcher), fetcher


def test_render_pdf_returns_a_pdf_with_pages(rendered: tuple[bytes, DataOnlyFetcher]) -> None:
    pdf, _ = rendered
    assert pdf.startswith(b"%PDF-")
    pages = re.findall(rb"/Type\s*/Page\b", _pdf_text(pdf))
    assert len(pages) >= 2


def test_pages_are_a4_and_the_module_table_gets_landscape_ones(rendered: tuple[bytes, DataOnlyFetcher]) -> None:
    sizes = _page_sizes(rendered[0])
    assert sizes and set(sizes) <= {A4_PORTRAIT, A4_PORTRAIT[::-1]}
    assert sizes[0] == A4_PORTRAIT and A4_PORTRAIT[::-1] in sizes and sizes[-1] == A4_PORTRAIT


def test_weasyprint_fetched_only_data_urls(rendered: tuple[bytes, DataOnlyFetcher],
                                           sample_report: AuditReport) -> None:
    _, fetcher = rendered
    assert fetcher.requested, "the figure should have gone through our fetcher"
    assert all(url.startswith("data:") for url in fetcher.requested), fetcher.requested
    figure = sample_report.section("performance").figures[0]
    assert any(figure.data_base64[:64] in url for url in fetcher.requested)


def test_the_fetcher_refuses_files_and_the_network() -> None:
    fetcher = DataOnlyFetcher()
    page = ('<link rel="stylesheet" href="https://cdn.example.com/x.css">'
            '<img src="http://127.0.0.1:9/x.png"><img src="file:///etc/hostname"><p>still renders</p>')
    pdf = HTML(string=page, url_fetcher=fetcher).write_pdf()
    assert pdf is not None and pdf.startswith(b"%PDF-")
    assert set(fetcher.requested) >= {"https://cdn.example.com/x.css", "http://127.0.0.1:9/x.png", "file:///etc/hostname"}
    for url in ("https://example.com/", "file:///etc/hostname"):
        with pytest.raises(ValueError, match="fetches nothing"):
            fetcher.fetch(url)
    assert fetcher.fetch("data:text/plain;base64,aGk=").read() == b"hi"
