"""Logit lens and direct logit attribution on the hand-built induction model."""

from __future__ import annotations

import pytest

from tests.lm_models import audit_induction_model

INDUCTION = "transformer.h.1.attn#head0"


@pytest.fixture(scope="module")
def lens(tmp_path_factory):  # type: ignore[no-untyped-def]
    report = audit_induction_model(tmp_path_factory.mktemp("lens"), analyses={"only": ["lens", "next_token"]})
    section = next(s for s in report.sections if s.id == "lens")
    assert section.error is None, section.error
    return report, section


def test_the_lens_after_the_last_layer_is_the_model_itself(lens) -> None:  # type: ignore[no-untyped-def]
    report, section = lens
    last = section.module_metrics["transformer.h.1"]
    assert last["lens_top1_agreement"] == 1.0
    assert last["lens_loss"] == pytest.approx(report.metrics["next_token.loss"], abs=1e-4)
    # before the induction head the repeats are not predictable: the lens after layer 0 is far worse
    assert section.module_metrics["transformer.h.0"]["lens_loss"] > last["lens_loss"] + 1.0


def test_direct_attributions_add_up_to_the_logit_and_name_the_induction_head(lens) -> None:  # type: ignore[no-untyped-def]
    _, section = lens
    # the final norm has no bias here, so the parts explain the whole centred logit of the correct token
    assert abs(section.metrics["unattributed"]) < 1e-6 * max(1.0, abs(section.metrics["own_centred_logit"]))
    dla = section.module_metric("direct_logit_attribution")
    assert max(dla, key=lambda n: dla[n]) == INDUCTION
    # the previous-token head writes a subspace the unembedding does not read; the MLPs output zeros
    for other in ("transformer.h.0.attn#head0", "transformer.h.0.mlp", "transformer.h.1.mlp"):
        assert abs(dla[other]) < 0.05 * dla[INDUCTION], other
