"""Token attributions of next-token predictions on the hand-built induction GPT-2 (tests/lm_models.py), whose
circuit is known: on `<bos> A B C ... A B C ...`, the prediction after the second copy of a word is made by the
induction head at that position (its query: the current token) attending to the position after the word's first
copy (its key: the first copy, written there by the previous-token head) and copying that position's token."""

from __future__ import annotations

import pytest

from tests.lm_models import audit_induction_model

LENGTH = 10
"""Words per half: a text is `<bos>` (position 0), the words at 1..LENGTH, then the same words again."""


@pytest.fixture(scope="module")
def section(tmp_path_factory):  # type: ignore[no-untyped-def]
    report = audit_induction_model(tmp_path_factory.mktemp("attr_lm"), analyses={"only": ["attribution"]},
                                   length=LENGTH)
    found = next(s for s in report.sections if s.id == "attribution")
    assert found.error is None, found.error
    return found


def test_each_text_explains_its_most_confident_correct_and_its_most_wrong_prediction(  # type: ignore[no-untyped-def]
        section) -> None:
    shown = section.details["texts"]
    confident = [t for t in shown if t["kind"] == "confident"]
    wrong = [t for t in shown if t["kind"] == "wrong"]
    assert confident and wrong
    # only the second half can be predicted (by copying); the first half's words are random
    assert all(t["correct"] and t["position"] > LENGTH and t["log_p"] > -0.1 for t in confident)
    assert all(not t["correct"] and 1 <= t["position"] <= LENGTH for t in wrong)
    # the prefix is what is shown, and it ends at the predicted position
    assert all(len(t["words"]) == t["position"] + 1 for t in shown)


def test_the_largest_attributions_lie_on_the_tokens_the_induction_circuit_reads(  # type: ignore[no-untyped-def]
        section) -> None:
    for t in (t for t in section.details["texts"] if t["kind"] == "confident"):
        j = t["position"]
        values = [v for _, v, _ in t["words"]]
        circuit = {j - LENGTH, j - LENGTH + 1, j}  # the earlier copy of the current word, the token after it, the query
        by_size = sorted(range(len(values)), key=lambda k: -abs(values[k]))
        assert set(by_size[:3]) == circuit, (j, values)
        largest = max(abs(v) for v in values)
        assert all(abs(values[k]) < 0.05 * largest for k in range(len(values)) if k not in circuit), (j, values)
        # the copied token (the next token's earlier occurrence) and the current token push the prediction up
        assert values[j - LENGTH + 1] > 0 and values[j] > 0
        assert t["words"][j - LENGTH + 1][0] == t["target"]


def test_attributions_add_up_to_the_change_from_the_baseline(section) -> None:  # type: ignore[no-untyped-def]
    assert section.metrics["ig_relative_delta"] < 0.01
    assert section.metrics["ig_target_gain"] > 0
    assert not any(f.id == "attribution.ig_not_converged" for f in section.findings)


def test_copying_from_far_back_is_a_finding(section) -> None:  # type: ignore[no-untyped-def]
    far = next(f for f in section.findings if f.id == "attribution.far_token")
    assert far.evidence["example_distance"] == LENGTH - 1  # the next token's earlier copy
    table = next(t for t in section.tables if t.id == "attribution.predictions")
    assert len(table.rows) == section.metrics["ig_samples"]


def test_a_prediction_is_attributed_to_its_prefix_only_and_the_attributions_add_up() -> None:
    from auditor.kit.captum_lm import PredictionChunk, input_embeddings, prediction_chunk
    from tests.contexts import make_context
    from tests.lm_models import induction_gpt2, repeated_texts, word_tokenizer

    ctx = make_context(induction_gpt2(), {"text": repeated_texts(2, length=6, seed=1)}, None,
                       tokenizer=word_tokenizer())
    keys = tuple(ctx.subject.inputs.first)
    layer = input_embeddings(ctx.subject)
    assert layer == "transformer.wte"
    positions = (9, 4)  # a copied prediction of text 0, a first-half one of text 1
    per_token, delta, gain = prediction_chunk(ctx.subject, PredictionChunk((0, 1), positions, keys, layer, 32, 64))
    for row, j in zip(per_token, positions, strict=True):
        assert bool((row[j + 1:] == 0).all())  # a causal model reads only the prefix
        assert bool((row[:j + 1] != 0).any())
    assert bool((delta.abs() <= 0.01 * gain.abs().clamp_min(1e-3)).all()), (delta, gain)


def test_a_llama_style_model_gets_token_attributions_and_trust_checks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from auditor.config import AnalysesConfig, AuditConfig, DataSpec, ModelSpec
    from auditor.pipeline import run_audit
    from tests.lm_models import repeated_texts, write_texts
    from tests.subject.test_causal_lm import _llama_dir

    data = write_texts(tmp_path / "texts.csv", repeated_texts(8, length=6, seed=0))
    report = run_audit(AuditConfig(model=ModelSpec(path=str(_llama_dir(tmp_path / "llama"))),
                                   data=DataSpec(path=str(data)), batch_size=4,
                                   analyses=AnalysesConfig.model_validate({"only": ["attribution", "trust"]})))
    ran = {s.id: s for s in report.sections}
    assert ran["attribution"].error is None and ran["trust"].error is None
    assert ran["attribution"].details["layer"] == "model.embed_tokens"
    assert ran["attribution"].metrics["ig_samples"] >= 8
