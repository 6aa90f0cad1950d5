"""Figures as the report embeds them: no text a reader cannot read."""

from __future__ import annotations

from matplotlib.text import Text

from auditor.kit.figures import MIN_FONT_PT, enforce_min_font, new_figure, to_figure


def test_no_text_in_a_figure_is_smaller_than_7_pt() -> None:
    with new_figure(3.0, 2.0) as (fig, ax):
        image = ax.imshow([[0.0, 1.0], [1.0, 0.0]])
        ax.set_xticks([0, 1], ["a", "b"], fontsize=5)
        ax.set_title("tiny", fontsize=4)
        bar = fig.colorbar(image, ax=ax)
        bar.ax.tick_params(labelsize=5)
        ax.text(0, 0, "cell", fontsize=6)
        enforce_min_font(fig)
        sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_text()]
        assert sizes and min(sizes) >= MIN_FONT_PT == 7.0
        figure = to_figure(fig, id="t", title="t", alt="t")
    assert figure.media_type == "image/png" and figure.data_base64
