"""Language-model ablation on the hand-built induction model: the induction head serves repeats only."""

from __future__ import annotations

import pytest

from tests.lm_models import audit_induction_model, random_gpt2_ablation

INDUCTION, PREVIOUS = "transformer.h.1.attn#head0", "transformer.h.0.attn#head0"
IDLE = ("transformer.h.0.attn#head1", "transformer.h.1.attn#head1", "transformer.h.0.mlp", "transformer.h.1.mlp")


@pytest.fixture(scope="module", params=["mean", "resample"])
def ablation(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    report = audit_induction_model(tmp_path_factory.mktemp(request.param),
                                   analyses={"only": ["lm_ablation"], "lm_ablation": {"mode": request.param}})
    section = next(s for s in report.sections if s.id == "lm_ablation")
    assert section.error is None, section.error
    return report, section


def test_ablating_the_induction_head_raises_the_loss_on_repeated_halves_and_not_on_first_halves(ablation) -> None:  # type: ignore[no-untyped-def]
    report, section = ablation
    head = section.module_metrics[INDUCTION]
    # the intact model predicts a repeated half almost surely (loss ~0.002): losing the head costs nats
    assert head["loss_increase_repeated"] > 2.0
    assert head["loss_increase_first"] < 0.1  # a first half has nothing to copy: no loss to lose
    assert head["loss_increase_low"] > 0.5
    finding = next(f for f in report.findings if f.id == "lm_ablation.in_context")
    assert INDUCTION in finding.evidence["targets"]


def test_parts_that_output_zeros_change_nothing(ablation) -> None:  # type: ignore[no-untyped-def]
    _, section = ablation
    for name in IDLE:  # zero weights: every replacement is zeros again
        metrics = section.module_metrics[name]
        assert abs(metrics["loss_increase"]) < 1e-6, name
    unused = next(f for f in section.findings if f.id == "lm_ablation.unused")
    assert set(unused.evidence["targets"].split(", ")) == set(IDLE)


def test_a_layer_is_ablated_by_its_branches_and_names_its_modules(ablation) -> None:  # type: ignore[no-untyped-def]
    _, section = ablation
    names = set(section.module_metrics)
    assert {"transformer.h.0", "transformer.h.1", "transformer.h.1.attn", INDUCTION, PREVIOUS} <= names
    # layer 1's MLP outputs zeros, so ablating the layer is ablating its attention
    layer, attention = section.module_metrics["transformer.h.1"], section.module_metrics["transformer.h.1.attn"]
    assert layer["loss_increase"] == pytest.approx(attention["loss_increase"], abs=1e-6)


def test_few_texts_are_inconclusive(tmp_path) -> None:  # type: ignore[no-untyped-def]
    report = audit_induction_model(tmp_path, texts=4, analyses={"only": ["lm_ablation"]})
    ids = {f.id for f in report.findings}
    assert "lm_ablation.inconclusive" in ids and "lm_ablation.in_context" not in ids


def test_mean_ablation_on_cached_prefixes_equals_full_passes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Every target (layers, attention, heads by their values, MLPs) on the engine's cached prefixes, stacked, gives
    the numbers of whole passes with the head's slice of the output projection's input replaced."""
    fast = random_gpt2_ablation(tmp_path / "fast")
    slow = random_gpt2_ablation(tmp_path / "slow", cache_mib=0)
    assert slow.details["cache"] is None
    cache = fast.details["cache"]  # every target on cached prefixes: none needed the whole model
    assert cache["targets"] == 21 and cache["full_forward"] == 0
    assert set(fast.module_metrics) == set(slow.module_metrics)
    assert len(fast.module_metrics) == 3 * (1 + 1 + 4 + 1)
    moved = 0
    for name, metrics in slow.module_metrics.items():
        for key, value in metrics.items():
            assert fast.module_metrics[name][key] == pytest.approx(value, rel=1e-4, abs=1e-5), (name, key)
        moved += abs(metrics["loss_increase"]) > 0.01
    assert moved >= 15  # the comparison is not between numbers that are all zero
