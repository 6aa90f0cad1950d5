"""Ablation of single MLP neurons of a language model (`[analyses.lm_ablation] neurons`): on the hand-built GPT-2
whose one live neuron of layer 0 reads w5 and writes w7 (tests/lm_models.py), on texts where w5 is always followed
by w7, ablating that neuron raises the loss, most on first occurrences (on a repeat the induction head predicts w7
too), and ablating any other neuron of the layer changes nothing at all (they output GELU(0) = 0 everywhere, their
mean too).

The neuron writes 0.3 into w7's slot here, not 1.0: mean ablation puts its mean (it fires on 2 tokens of 15) at
every position, and at full strength that mean alone raises w7's logit everywhere by more than the neuron's own
peak gains where it fires (ablating it then lowers the loss: -0.07 nats, interval [-0.23, 0.12]). A neuron that
nudges w7 is what mean ablation can measure, and it does: +0.87 nats [0.70, 1.04] here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from auditor.config import AnalysesConfig, AuditConfig, DataSpec, ModelSpec
from auditor.errors import ConfigError
from auditor.pipeline import run_audit
from tests.lm_models import NEURON, READS, WRITES, neuron_gpt2, random_gpt2_ablation, word_tokenizer, write_texts

ACT = "transformer.h.0.mlp.act"
INNER = 512  # the hand-built model's n_inner


def _texts(n: int) -> list[str]:
    """Random words other than w5 and w7, with the pair 'w5 w7' somewhere in each half; each half said twice."""
    rng = np.random.default_rng(3)
    others = [w for w in range(1, 16) if w not in (READS, WRITES)]
    texts = []
    for _ in range(n):
        words = [f"w{w}" for w in rng.choice(others, size=5, replace=False)]
        at = int(rng.integers(0, len(words)))
        half = " ".join([*words[:at], f"w{READS}", f"w{WRITES}", *words[at:]])
        texts.append(f"{half} {half}")
    return texts


def _nudging_gpt2():  # type: ignore[no-untyped-def]  # a GPT2LMHeadModel
    import torch

    model = neuron_gpt2()
    with torch.no_grad():
        model.transformer.h[0].mlp.c_proj.weight[NEURON, WRITES] = 0.3
    return model


def _config(folder: Path, tables: dict[str, object]) -> AuditConfig:
    model = _nudging_gpt2()
    model.save_pretrained(folder / "model")
    word_tokenizer().save_pretrained(folder / "model")
    data = write_texts(folder / "texts.csv", _texts(16))
    return AuditConfig(model=ModelSpec(path=str(folder / "model")), data=DataSpec(path=str(data)), batch_size=8,
                       analyses=AnalysesConfig.model_validate({"only": ["lm_ablation"], "lm_ablation": tables}))


@pytest.fixture(scope="module")
def section(tmp_path_factory):  # type: ignore[no-untyped-def]
    report = run_audit(_config(tmp_path_factory.mktemp("neurons"), {"neurons": [0]}))
    section = report.section("lm_ablation")
    assert section.error is None, section.error
    return section


def test_the_planted_neuron_matters_and_no_other_neuron_of_its_layer_does(section) -> None:  # type: ignore[no-untyped-def]
    neurons = {k: v for k, v in section.module_metrics.items() if k.startswith(f"{ACT}#")}
    assert len(neurons) == INNER
    planted = neurons[f"{ACT}#{NEURON}"]
    assert planted["loss_increase_low"] > 0.3  # it is what predicts w7 after w5
    assert planted["loss_increase_first"] > planted["loss_increase_repeated"] > 0
    for name, metrics in neurons.items():
        if name != f"{ACT}#{NEURON}":
            assert metrics["loss_increase"] == 0.0 and metrics["loss_increase_low"] == 0.0, name
    unused = next(f for f in section.findings if f.id == "lm_ablation.unused")
    listed = str(unused.evidence["targets"]).split(", ")
    assert unused.evidence["count"] >= INNER - 1 and f"{ACT}#{NEURON}" not in listed and f"{ACT}#{NEURON + 1}" in listed


def test_the_neurons_table_leads_with_it_and_the_main_table_has_no_neurons(section) -> None:  # type: ignore[no-untyped-def]
    main, neurons = section.tables
    assert neurons.id == "lm_ablation.neurons" and len(neurons.rows) == 20
    assert neurons.rows[0][0] == f"{ACT}#{NEURON}"
    assert all(row[1] != "neuron" for row in main.rows)


def test_neuron_ablation_on_cached_prefixes_equals_whole_passes_and_resample_runs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    only_neurons = {"neurons": [1], "layers": False, "attention": False, "heads": False, "mlps": False}
    fast = random_gpt2_ablation(tmp_path / "fast", **only_neurons)
    slow = random_gpt2_ablation(tmp_path / "slow", cache_mib=0, **only_neurons)
    assert fast.details["cache"]["targets"] == 64 and fast.details["cache"]["full_forward"] == 0
    assert set(fast.module_metrics) == set(slow.module_metrics) == {f"transformer.h.1.mlp.act#{u}" for u in range(64)}
    for name, metrics in slow.module_metrics.items():
        for key, value in metrics.items():
            assert fast.module_metrics[name][key] == pytest.approx(value, rel=1e-4, abs=1e-5), (name, key)
    assert sum(abs(m["loss_increase"]) > 1e-3 for m in slow.module_metrics.values()) >= 32
    resampled = random_gpt2_ablation(tmp_path / "resample", mode="resample", **only_neurons)
    assert len(resampled.module_metrics) == 64


def test_a_layer_without_neurons_is_a_config_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="layer 5 has no MLP neurons to ablate .the model has 2 layers"):
        run_audit(_config(tmp_path, {"neurons": [5]}))


def test_the_atlas_says_which_neuron_of_the_layer_matters(tmp_path) -> None:  # type: ignore[no-untyped-def]
    report = run_audit(_config(tmp_path, {"neurons": [0], "layers": False, "attention": False, "heads": False}))
    clause = next(c.text for card in report.cards for c in card.clauses if "Ablated one at a time" in c.text)
    assert f"the {INNER} MLP neurons" in clause and f"(#{NEURON}, then #" in clause
    assert f"{INNER - 1} change it by less than 0.01" in clause
