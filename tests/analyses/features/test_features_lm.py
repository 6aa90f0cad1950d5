"""Features of a causal language model: MLP neurons whose input token and output token are set by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from auditor.config import AnalysesConfig, AuditConfig, DataSpec, ModelSpec
from auditor.pipeline import run_audit
from auditor.report.io import save_report
from tests.lm_models import NEURON, READS, WRITES, neuron_gpt2, repeated_texts, word_tokenizer, write_texts

MODULE = "transformer.h.0.mlp.act"


def _audit(folder: Path, model, tables: dict[str, object], *, texts: int = 16):  # type: ignore[no-untyped-def]
    model.save_pretrained(folder / "model")
    word_tokenizer().save_pretrained(folder / "model")
    data = write_texts(folder / "texts.csv", repeated_texts(texts, length=6, seed=0))
    config = AuditConfig(model=ModelSpec(path=str(folder / "model")), data=DataSpec(path=str(data)), batch_size=8,
                         analyses=AnalysesConfig.model_validate({"only": ["features"], **tables}))
    return run_audit(config)


@pytest.fixture(scope="module")
def report(tmp_path_factory):  # type: ignore[no-untyped-def]
    return _audit(tmp_path_factory.mktemp("neuron"), neuron_gpt2(),
                  {"features": {"search_units": 1, "search_length": 3, "search_steps": 8}})


def _unit(section, module: str, unit: int):  # type: ignore[no-untyped-def]
    group = next(g for g in section.details["text_units"] if g["module"] == module)
    return next(u for u in group["units"] if u["unit"] == unit)


def test_the_mlp_activations_are_the_modules_and_the_planted_neuron_is_chosen(report) -> None:  # type: ignore[no-untyped-def]
    section = report.section("features")
    assert section.error is None, section.error
    assert [g["module"] for g in section.details["text_units"]] == [MODULE, "transformer.h.1.mlp.act"]
    # the only neuron of layer 0 that is ever active: chosen first, by relevance toward the mean log p
    assert section.details["text_units"][0]["units"][0]["unit"] == NEURON
    assert set(section.module_metrics) >= {MODULE, "transformer.h.0.attn", "transformer.h.1.attn"}


def test_its_top_examples_peak_on_its_input_token_with_the_context_before_only(report) -> None:  # type: ignore[no-untyped-def]
    section = report.section("features")
    unit = _unit(section, MODULE, NEURON)
    peaks = next(u for u in section.details["modules"][0]["units"] if u["unit"] == NEURON)["top_by_activation"]
    assert unit["by_activation"] and len(peaks) == len(unit["by_activation"])
    for snippet, peak in zip(unit["by_activation"], peaks, strict=True):
        assert snippet["token"] == f"w{READS}" and snippet["after"] == ""
        # the tokens before the peak, <bos> included, up to context_tokens (6); none after it
        before = snippet["before"].removeprefix("… ").split()
        assert len(before) == min(peak["position"], 6) and f"w{READS}" not in before
    assert unit["fires_on"][0]["token"] == f"w{READS}"
    assert [f["token"] for f in unit["fires_on"]] == [f"w{READS}"]  # every top-k example peaks on it
    assert [t["token"] for t in unit["promotes"]] == [f"w{WRITES}"]  # the one logit its output row raises


def test_the_token_search_puts_the_input_token_at_the_scored_last_position(report) -> None:  # type: ignore[no-untyped-def]
    unit = _unit(report.section("features"), MODULE, NEURON)
    search = unit["search"]
    assert search["scored"] == "last" and len(search["tokens"]) == 3
    assert search["tokens"][-1] == f"w{READS}"
    assert search["value"] == pytest.approx(unit["max_real"], rel=1e-3)  # the same token, the same activation


def test_the_neuron_table_renders(report, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    table = report.section("features").tables[0]
    row = dict(zip(table.columns, next(r for r in table.rows if r[:2] == [MODULE, NEURON]), strict=True))
    assert row["fires on"].startswith(f"w{READS} ×") and row["promotes"] == f"w{WRITES}"
    assert row["text found"].split()[-1] == f"w{READS}"
    paths = save_report(report, tmp_path / "out", formats=("html",))
    html = Path(paths["html"]).read_text(encoding="utf-8")
    assert f"<mark>w{READS}</mark>" in html
    assert f"fires on</span>\n<code>w{READS}</code> ×" in html and f"promotes</span>\n<code>w{WRITES}</code> +" in html


def test_a_llama_style_model_gets_its_neurons(tmp_path: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=16, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, bos_token_id=0,
                         eos_token_id=0, pad_token_id=0, use_cache=False)
    report = _audit(tmp_path, LlamaForCausalLM(config).eval(),
                    {"features": {"search_units": 1, "search_steps": 2, "search_candidates": 8}}, texts=8)
    section = report.section("features")
    assert section.error is None, section.error
    groups = section.details["text_units"]
    assert [g["module"] for g in groups] == ["model.layers.0.mlp.act_fn", "model.layers.1.mlp.act_fn"]
    for group in groups:
        for unit in group["units"]:
            assert 1 <= len(unit["promotes"]) <= 5 and all(t["logit"] > 0 for t in unit["promotes"])
            assert isinstance(unit["fires_on"], list)
    assert groups[0]["units"][0]["search"]["scored"] == "last"
    assert "attention_entropy/0" in section.module_metrics["model.layers.1.self_attn"]  # its heads, read eagerly


class _Explodes(torch.nn.Module):
    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        raise RuntimeError("this layer explodes")


def test_its_passes_leave_no_hook_also_when_the_model_raises() -> None:
    from auditor.analyses import run_one
    from auditor.analyses.features import Features, FeaturesParams
    from tests.contexts import make_context

    def hooks_left(model: torch.nn.Module) -> list[str]:
        return [n for n, m in model.named_modules() if m._forward_hooks or m._forward_pre_hooks or m._backward_hooks]

    for explode in (False, True):
        model = neuron_gpt2()
        analysis = Features(FeaturesParams(search_units=1, search_steps=2, search_candidates=4))
        ctx = make_context(model, {"text": repeated_texts(8, length=6, seed=0)}, None, tokenizer=word_tokenizer(),
                           analyses=[analysis])  # the capture runs on the healthy model
        if explode:
            model.transformer.h[1] = _Explodes()
        section = run_one(analysis, ctx)
        assert (section.error is not None) == explode, section.error
        assert hooks_left(model) == []


def test_the_atlas_says_what_the_neuron_reads_and_writes_on_its_layers_card(report) -> None:  # type: ignore[no-untyped-def]
    # the MLP activation has no card of its own: its neurons are told on the nearest module that has one
    holder = next(c for c in report.cards if any(MODULE in clause.text for clause in c.clauses))
    assert MODULE.startswith(f"{holder.module}.")
    clause = next(c.text for c in holder.clauses if MODULE in c.text)
    # the only neuron of layer 0 that is ever active, and the only one whose output row writes a token
    assert f"MLP neuron {NEURON} ({MODULE}) fires on 'w{READS}' and promotes 'w{WRITES}' directly." in clause
    assert sum(MODULE in clause.text for c in report.cards for clause in c.clauses) == 1  # one card tells it
