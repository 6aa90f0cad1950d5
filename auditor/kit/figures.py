"""Figures as embedded PNGs (matplotlib, Agg backend): no file beside the report, nothing fetched."""

from __future__ import annotations

import base64
import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from auditor.schema.report import Figure


@contextmanager
def new_figure(width: float, height: float) -> Iterator[tuple[Any, Any]]:
    """A fresh matplotlib figure and axes, closed afterwards even if drawing raises."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    try:
        yield fig, ax
    finally:
        plt.close(fig)


MIN_FONT_PT = 7.0
"""No text in a figure is smaller than this (points): 5-pt tick labels cannot be read in the PDF."""


def enforce_min_font(fig: Any, *, minimum: float = MIN_FONT_PT) -> None:
    """Raises every text of `fig` (titles, labels, tick labels, legends, colour bars) to at least `minimum` pt."""
    from matplotlib.text import Text

    for text in fig.findobj(Text):
        if text.get_text() and text.get_fontsize() < minimum:
            text.set_fontsize(minimum)


def to_figure(fig: Any, *, id: str, title: str, alt: str, caption: str = "") -> Figure:
    """Encodes a matplotlib figure as an embedded PNG Figure (no text under MIN_FONT_PT)."""
    enforce_min_font(fig)
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # axes sharing a colour bar are not tight_layout's case; bbox_inches fits them
        warnings.simplefilter("ignore", UserWarning)
        fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return Figure(id=id, title=title, media_type="image/png", alt=alt, caption=caption,
                  data_base64=base64.b64encode(buffer.getvalue()).decode("ascii"))


def short_name(name: str, limit: int = 30) -> str:
    """A module name cut from the left to `limit` characters, marked with an ellipsis."""
    return name if len(name) <= limit else "…" + name[-(limit - 1):]


def axis_labels(names: list[str], limit: int = 30) -> list[str]:
    """Axis labels: the dotted prefix all names share is dropped (`encoder.encoder.layer.3` -> `layer.3`)."""
    parts = [n.split(".") for n in names]
    common = 0
    while len(names) > 1 and all(len(p) > common + 1 for p in parts) and len({p[common] for p in parts}) == 1:
        common += 1
    keep = max(common - 1, 0)  # keep the last shared part for context ("layer.3", not "3")
    return [short_name(".".join(p[keep:]), limit) for p in parts]
