"""Gradients of a causal LM, on the model whose induction circuit is built by hand (tests/lm_models.py): its
MLPs and all heads but two are zero, so which modules and heads contribute is known by construction."""

from __future__ import annotations

import pytest

from tests.lm_models import HEADS, audit_induction_model

INDUCTION, PREVIOUS = "transformer.h.1.attn#head0", "transformer.h.0.attn#head0"


@pytest.fixture(scope="module")
def section(tmp_path_factory):  # type: ignore[no-untyped-def]
    report = audit_induction_model(tmp_path_factory.mktemp("lm-gradients"),
                                   analyses={"only": ["inventory", "gradients"]})
    found = next(s for s in report.sections if s.id == "gradients")
    assert found.error is None, found.error
    return found


def test_the_target_is_the_texts_next_token_log_probability_and_no_number_is_per_class(section) -> None:  # type: ignore[no-untyped-def]
    assert "audited next tokens" in section.summary and "class" not in section.summary
    assert not any("/" in key and not key.startswith("head_abs_grad_x_act/")
                   for values in section.module_metrics.values() for key in values)
    # its next tokens are its input tokens: no baseline to integrate from, so no conductance
    assert not any("conductance" in key for values in section.module_metrics.values() for key in values)


def test_the_two_heads_of_the_circuit_contribute_and_the_zeroed_parts_nothing(section) -> None:  # type: ignore[no-untyped-def]
    metrics = section.module_metrics
    heads = {f"transformer.h.{layer}.attn#head{h}" for layer in (0, 1) for h in range(HEADS)}
    assert heads <= set(metrics)
    for head in heads - {INDUCTION, PREVIOUS}:  # zero value weights: the head outputs zeros
        assert metrics[head]["abs_grad_x_act"] == 0.0
    for mlp in ("transformer.h.0.mlp", "transformer.h.1.mlp"):  # zero weights: the MLP outputs zeros
        assert metrics[mlp]["abs_grad_x_act"] == 0.0 and metrics[mlp]["grad_norm"] > 0
    # No sign or order is asserted: the final LayerNorm is scale-invariant, so gradient × activation over the
    # parts of the residual stream sums to zero there, and a part's number says how it compares to the others.
    assert metrics[INDUCTION]["abs_grad_x_act"] > 0
    assert metrics[PREVIOUS]["abs_grad_x_act"] > 0  # the induction head's keys read what it writes


def test_the_heads_contributions_sum_to_their_attention_modules(section) -> None:  # type: ignore[no-untyped-def]
    """The output projection is linear and has no bias here: gradient × input over its heads' slices equals
    gradient × output of the attention module, sample by sample, so also on average."""
    metrics = section.module_metrics
    for layer in (0, 1):
        attention = metrics[f"transformer.h.{layer}.attn"]
        total = sum(metrics[f"transformer.h.{layer}.attn#head{h}"]["grad_x_act"] for h in range(HEADS))
        assert total == pytest.approx(attention["grad_x_act"], rel=1e-4, abs=1e-6)
        assert [attention[f"head_abs_grad_x_act/{h}"] for h in range(HEADS)] == \
            [metrics[f"transformer.h.{layer}.attn#head{h}"]["abs_grad_x_act"] for h in range(HEADS)]
    assert any(f.id == "gradients.heads" for f in section.figures)


def test_heads_and_mlps_are_ranked_as_parts_of_the_stream_and_layers_are_not(section) -> None:  # type: ignore[no-untyped-def]
    """A layer's output is the whole residual stream, not a part of it: under the final LayerNorm (scale-invariant)
    the last layer's gradient × activation is zero by construction, so ranking layers would say nothing."""
    metrics = section.module_metrics
    largest_part = max(metrics[m]["abs_grad_x_act"] for m in (INDUCTION, PREVIOUS))
    assert metrics["transformer.h.1"]["abs_grad_x_act"] < 0.01 * largest_part  # zero but for the norm's epsilon
    (ranked,) = [t for t in section.tables if t.id == "gradients.ranked"]
    cuts = {row[0] for row in ranked.rows}
    assert cuts == {"heads and MLPs writing to the residual stream"}
    ranked_modules = [row[2] for row in ranked.rows]
    assert INDUCTION in ranked_modules and PREVIOUS in ranked_modules
    assert not any(m in ("transformer.h.0", "transformer.h.1") for m in ranked_modules)
    assert "scale-invariant" in section.summary
