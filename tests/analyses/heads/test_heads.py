"""Attention-head signatures on a model whose induction circuit is built by hand (tests/lm_models.py)."""

from __future__ import annotations

import pytest

from tests.lm_models import audit_induction_model

INDUCTION, PREVIOUS = "transformer.h.1.attn#head0", "transformer.h.0.attn#head0"
IDLE = ("transformer.h.0.attn#head1", "transformer.h.1.attn#head1")


@pytest.fixture(scope="module")
def report(tmp_path_factory):  # type: ignore[no-untyped-def]
    return audit_induction_model(tmp_path_factory.mktemp("induction"))


def section(report, id):  # type: ignore[no-untyped-def]
    found = next(s for s in report.sections if s.id == id)
    assert found.error is None, found.error
    return found


def test_the_induction_head_and_the_previous_token_head_it_reads_are_found(report) -> None:  # type: ignore[no-untyped-def]
    heads = section(report, "heads")
    assert heads.details["induction"] == [INDUCTION]
    assert heads.details["previous_token"] == [PREVIOUS]
    assert heads.details["reads"] == {INDUCTION: PREVIOUS}
    scores = heads.module_metrics
    assert scores[INDUCTION]["induction_score"] > 0.9 and scores[INDUCTION]["copying_score"] > 0.9
    assert scores[PREVIOUS]["previous_token_score"] > 0.9
    for idle in IDLE:  # uniform attention over up to 21 keys: far below any threshold
        assert scores[idle]["induction_score"] < 0.2 and scores[idle]["previous_token_score"] < 0.2
    assert scores[INDUCTION]["reads_previous_token_head_drop"] > 0.8
    finding = next(f for f in report.findings if f.id == "heads.induction_heads")
    assert finding.module == INDUCTION and PREVIOUS in finding.message
    assert f"{scores[INDUCTION]['induction_score']:.2f}" in finding.message


def test_head_names_are_module_names_with_the_head_index(report) -> None:  # type: ignore[no-untyped-def]
    names = set(section(report, "heads").module_metrics)
    assert names == {f"transformer.h.{layer}.attn#head{h}" for layer in (0, 1) for h in (0, 1)}


def test_the_atlas_cards_say_which_attention_holds_the_induction_head_and_which_head_it_reads(report) -> None:  # type: ignore[no-untyped-def]
    """The synthesis reads the heads section: the layer-1 attention's card holds the induction head reading the
    layer-0 previous-token head, the layer-0 attention's card the previous-token head read by it; no other card
    gets either tag."""
    scores = section(report, "heads").module_metrics
    late, early = report.card("transformer.h.1.attn"), report.card("transformer.h.0.attn")
    assert "induction head" in late.tags and "previous-token head" not in late.tags
    assert "holds an induction head" in late.statement.split(". ")[0]  # the headline
    induction = next(c for c in late.clauses if c.tag == "induction head")
    assert f"Its head {INDUCTION} is an induction head" in induction.text
    assert f"it reads the previous-token head {PREVIOUS}" in induction.text
    assert f"{scores[INDUCTION]['induction_score']:.2f} of its attention" in induction.text
    assert {(e.key, e.module) for e in induction.evidence} >= {("induction_score", INDUCTION),
                                                                ("reads_previous_token_head_drop", INDUCTION)}
    assert "previous-token head" in early.tags and "induction head" not in early.tags
    assert "holds a previous-token head" in early.statement.split(". ")[0]
    previous = next(c for c in early.clauses if c.tag == "previous-token head")
    assert previous.text.startswith(f"Its head {PREVIOUS} is a previous-token head")
    assert previous.text.endswith(f"read by the induction head {INDUCTION}.")
    others = [c for c in report.cards if c.module not in ("transformer.h.0.attn", "transformer.h.1.attn")]
    assert others and not any({"induction head", "previous-token head"} & set(c.tags) for c in others)
