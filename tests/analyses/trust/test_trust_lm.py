"""The trust checks on next-token predictions of the hand-built induction GPT-2 (tests/lm_models.py): its
explanations must change when its weights are re-initialized, and deleting the prefix tokens they rank first must
lower the real next token's probability faster than deleting tokens in random orders."""

from __future__ import annotations

import pytest

from tests.lm_models import audit_induction_model


@pytest.fixture(scope="module")
def section(tmp_path_factory):  # type: ignore[no-untyped-def]
    report = audit_induction_model(tmp_path_factory.mktemp("trust_lm"), analyses={"only": ["trust"]})
    found = next(s for s in report.sections if s.id == "trust")
    assert found.error is None, found.error
    return found


def test_the_randomization_check_passes_on_next_token_predictions(section) -> None:  # type: ignore[no-untyped-def]
    threshold = 0.5  # TrustParams.sanity_threshold
    for method in ("integrated_gradients", "input_x_gradient"):
        assert abs(section.metrics[f"sanity_correlation/{method}"]) < threshold
    assert not any(f.id == "trust.sanity_failed" for f in section.findings)
    steps = next(t for t in section.tables if t.id == "trust.sanity")
    assert steps.rows[-1][1] == "transformer.wte"  # the cascade reaches the token embeddings last


def test_deleting_the_top_attributed_prefix_tokens_beats_random_orders(section) -> None:  # type: ignore[no-untyped-def]
    m = section.metrics
    assert m["faithfulness_conclusive"] == 1.0  # occlusion beats random orders, random maps do not
    for method in ("integrated_gradients", "input_x_gradient"):
        assert m[f"deletion_auc/{method}"] < m["random_deletion_auc"]
        assert m[f"deletion_p/{method}"] < 0.05
    assert not any(f.id in ("trust.unfaithful", "trust.faithfulness_inconclusive") for f in section.findings)
    # the curves follow the probability of the real next token, which the intact prefixes predict
    assert m["deletion_start_probability"] > m["deletion_end_probability"]


def test_no_protected_feature_check_runs_without_a_class_decision(section) -> None:  # type: ignore[no-untyped-def]
    assert not any(f.id == "trust.protected_feature" for f in section.findings)
    assert "no class decision" in section.summary
    assert "next-token predictions" in section.summary
