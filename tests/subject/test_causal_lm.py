"""Causal language models as subjects: detection, audited tokens (text, prompt + completion), --max-tokens, and
a Llama-style model audited like GPT-2."""

from __future__ import annotations

import json

import pytest
import torch

from auditor.config import AnalysesConfig, AuditConfig, DataSpec, ModelSpec
from auditor.pipeline import run_audit
from auditor.subject import load_subject
from tests.lm_models import repeated_texts, save_induction_gpt2, word_tokenizer, write_texts


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):  # type: ignore[no-untyped-def]
    return save_induction_gpt2(tmp_path_factory.mktemp("gpt2") / "model")


def test_a_causal_lm_directory_is_a_causal_lm_subject_with_per_token_losses(gpt2_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = write_texts(tmp_path / "texts.csv", ["w1 w2 w3", "w4 w5 w6 w7 w8"])
    subject = load_subject(AuditConfig(model=ModelSpec(path=str(gpt2_dir)), data=DataSpec(path=str(data),
                                                                                         max_length=16)))
    assert subject.task == "causal_lm" and subject.labels is None and subject.loaded.causal_lm
    batch = next(subject.batches(8))
    scores = subject.adapter.forward(subject.model, batch.inputs)
    assert scores.shape == (2, 15)  # one loss per next token, padded to max_length - 1
    # "<bos> w1 w2 w3": 3 predicted tokens; "<bos> w4 .. w8": 5; the rest is NaN
    assert (~torch.isnan(scores)).sum(dim=1).tolist() == [3, 5]


def test_prompt_and_completion_count_only_the_completion(gpt2_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in (
        {"prompt": "w1 w2 w3", "completion": " w1 w2"}, {"prompt": "w4", "completion": " w5 w6 w7"})))
    subject = load_subject(AuditConfig(model=ModelSpec(path=str(gpt2_dir)), data=DataSpec(path=str(data))))
    batch = next(subject.batches(8))
    scores = subject.adapter.forward(subject.model, batch.inputs)
    assert subject.data.texts == ["w4 w5 w6 w7", "w1 w2 w3 w1 w2"]  # shortest first
    audited = ~torch.isnan(scores)[[1, 0]]  # in the file's order
    assert audited.sum(dim=1).tolist() == [2, 3]
    # the first audited loss of text 0 is the prediction of "w1" after "<bos> w1 w2 w3" (column 3)
    assert audited[0].nonzero().flatten().tolist() == [3, 4]


def test_texts_longer_than_max_tokens_are_cut_and_the_report_says_so(gpt2_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    texts = [*repeated_texts(3, length=10, seed=1), "w1 w2"]  # 21 tokens each with <bos>, and 3
    data = write_texts(tmp_path / "texts.csv", texts)
    report = run_audit(AuditConfig(model=ModelSpec(path=str(gpt2_dir)), data=DataSpec(path=str(data), max_length=12),
                                   analyses=AnalysesConfig(only=["next_token"])))
    finding = next(f for f in report.findings if f.id == "next_token.texts_cut")
    assert finding.evidence == {"texts_cut": 3, "texts": 4, "max_tokens": 12, "longest": 21}
    assert report.metrics["next_token.tokens"] == 3 * 11 + 2


def _llama_dir(folder):  # type: ignore[no-untyped-def]
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=16, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, bos_token_id=0,
                         eos_token_id=0, pad_token_id=0, use_cache=False)
    LlamaForCausalLM(config).save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    return folder


def test_a_llama_style_model_is_audited_by_every_language_model_analysis(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = _llama_dir(tmp_path / "llama")
    data = write_texts(tmp_path / "texts.csv", repeated_texts(12, length=6, seed=0))
    report = run_audit(AuditConfig(model=ModelSpec(path=str(model)), data=DataSpec(path=str(data)), batch_size=4,
                                   analyses=AnalysesConfig.model_validate({"heads": {"length": 6, "samples": 4}})))
    ran = {s.id: s for s in report.sections}
    for id in ("next_token", "lm_ablation", "lens", "heads"):
        assert ran[id].error is None, (id, ran[id].error)
    heads = set(ran["heads"].module_metrics)
    assert heads == {f"model.layers.{i}.self_attn#head{h}" for i in range(2) for h in range(4)}
    assert "model.layers.1.mlp" in ran["lm_ablation"].module_metrics
    assert ran["lens"].module_metrics["model.layers.1"]["lens_top1_agreement"] == 1.0
    # RMSNorm has no bias: the direct attributions explain the whole logit
    assert abs(ran["lens"].metrics["unattributed"]) < 1e-5 * max(1.0, abs(ran["lens"].metrics["own_centred_logit"]))


def test_the_command_line_cuts_texts_at_max_tokens(gpt2_dir, tmp_path, run_cli) -> None:  # type: ignore[no-untyped-def]
    data = write_texts(tmp_path / "texts.csv", repeated_texts(12, length=10, seed=2))
    result = run_cli("run", "--model", gpt2_dir, "--data", data, "--out", tmp_path / "out", "--max-tokens", "12",
                     "--analyses", "next_token,heads", "--formats", "json", "-q")
    assert result.exit_code == 0, result.stderr
    audit = json.loads((tmp_path / "out" / "audit.json").read_text())
    cut = next(f for f in audit["findings"] if f["id"] == "next_token.texts_cut")
    assert cut["evidence"]["texts_cut"] == 12 and cut["evidence"]["max_tokens"] == 12
    assert audit["metadata"]["task"] == "causal_lm"
