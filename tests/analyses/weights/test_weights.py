"""The weights analysis on matrices whose spectrum is known by construction, and the audit without data.

Random matrices come from `portable_randn` (bit-identical on every CPU); every assertion on a number has a
margin that float32 rounding of an SVD cannot cross.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import auditor
from auditor.analyses.weights.fit import fit_power_law
from auditor.schema.report import Section
from tests.conftest import CliResult
from tests.models import portable_randn

N, M = 600, 300


def _weights(model: nn.Module, **params: object) -> Section:
    config = auditor.AuditConfig.model_validate({"analyses": {"weights": params}}) if params else None
    return auditor.audit(model, None, analyses=["weights"], config=config).section("weights")


def _linear(weight: torch.Tensor) -> nn.Sequential:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return nn.Sequential(layer)


def _gaussian(*shape: int, seed: int = 0) -> torch.Tensor:
    return portable_randn(*shape, generator=torch.Generator().manual_seed(seed))


def _only(section: Section, finding_id: str) -> auditor.Finding:
    found = [f for f in section.findings if f.id == finding_id]
    assert len(found) == 1, [f.id for f in section.findings]
    return found[0]


def test_an_iid_gaussian_matrix_has_no_spike_no_trap_and_no_power_law() -> None:
    section = _weights(_linear(_gaussian(N, M)))
    metrics = section.module_metrics["0"]
    assert metrics["weight_spikes"] == 0 and metrics["weight_traps"] == 0
    assert "weight_alpha" not in metrics and "weight_fit_ks" not in metrics  # rejected, never shown as a number
    noise = _only(section, "weights.under_trained")
    assert noise.module == "0" and noise.evidence["random_like"] is True
    assert noise.evidence["lambda_max"] < 0.99 * noise.evidence["edge"]  # observed 0.94: no rounding flips it
    assert "rejected" in section.details["not_fitted"]["0"]
    assert section.metrics["layers_random_like"] == 1 and "mean_alpha" not in section.metrics


def test_a_planted_rank_one_spike_is_one_spike_at_its_eigenvalue() -> None:
    theta2 = 4 * math.sqrt(N * M)  # well past the BBP transition at √(NM)
    g = torch.Generator().manual_seed(1)
    u, v = portable_randn(N, generator=g), portable_randn(M, generator=g)
    weight = _gaussian(N, M) + math.sqrt(theta2) * torch.outer(u / u.norm(), v / v.norm())
    metrics = _weights(_linear(weight)).module_metrics["0"]
    assert metrics["weight_spikes"] == 1 and metrics["weight_traps"] == 0  # structure: shuffling removes it
    # Benaych-Georges & Nadakuditi (2011): the outlier of WᵀW sits at (N + θ²)(M + θ²) / θ² (observed 0.94-1.00 of
    # it over five seeds: finite size pulls it a little lower).
    predicted = (N + theta2) * (M + theta2) / theta2
    assert 0.85 < 10 ** metrics["weight_log_spectral_norm"] / predicted < 1.05
    top = torch.linalg.svdvals(weight.double())[:2] ** 2
    assert top[1] < 0.8 * top[0]  # the one spike is the top eigenvalue, the next one is bulk


def test_one_huge_entry_is_a_correlation_trap_found_at_its_place() -> None:
    weight = _gaussian(N, M)
    weight[17, 42] = 60.0
    section = _weights(_linear(weight))
    trap = _only(section, "weights.correlation_trap")
    assert trap.module == "0" and trap.evidence["traps"] == 1
    assert trap.evidence["largest_weight_index"] == "[17, 42]" and trap.evidence["largest_weight"] == 60.0
    assert trap.evidence["trap_lambda"] > 2 * trap.evidence["edge"]  # observed 2.5x: it survives shuffling
    assert "weight[17, 42]" in trap.message and section.module_metrics["0"]["weight_traps"] == 1


def test_a_rank_deficient_layer_is_rank_collapse() -> None:
    weight = _gaussian(N, 4) @ _gaussian(4, M, seed=1)
    section = _weights(_linear(weight))
    collapse = _only(section, "weights.rank_collapse")
    assert collapse.module == "0" and collapse.evidence["rank"] == 4 and collapse.evidence["full_rank"] == M
    assert section.module_metrics["0"]["weight_rank_fraction"] == pytest.approx(4 / M)
    assert "4 nonzero eigenvalues" in section.details["not_fitted"]["0"]
    assert not [f for f in _weights(_linear(_gaussian(N, M))).findings if f.id == "weights.rank_collapse"]


def _clauset_loop(x: np.ndarray) -> tuple[float, float]:
    """Clauset, Shalizi & Newman's rule written out as the `powerlaw` package runs it: every x_min but the
    largest value, the MLE, the KS distance against the empirical CDF 0, 1/n, ..., the first minimum."""
    x = np.sort(x)
    best = (math.inf, math.nan, math.nan)
    for i in range(len(x) - 1):
        tail = x[i:]
        alpha = 1 + len(tail) / np.sum(np.log(tail / x[i]))
        distance = np.max(np.abs(1 - (tail / x[i]) ** (1 - alpha) - np.arange(len(tail)) / len(tail)))
        if distance < best[0]:
            best = (distance, alpha, x[i])
    return best[1], best[2]


def test_the_tail_fit_is_clausets_rule_and_recovers_a_known_exponent() -> None:
    rng = np.random.default_rng(0)
    sample = (rng.pareto(1.5, 3000) + 1.0) * np.exp(rng.normal(0, 0.05, 3000))  # α = 2.5 in the tail
    fit = fit_power_law(sample, min_evals=20)
    alpha, xmin = _clauset_loop(sample)
    assert fit.alpha == pytest.approx(alpha, rel=1e-9) and fit.xmin == pytest.approx(xmin, rel=1e-12)
    assert fit.alpha == pytest.approx(2.5, abs=0.2) and fit.se is not None and fit.se < 0.1
    assert fit_power_law(sample[:12], min_evals=20).failed == "12 nonzero eigenvalues; a tail fit needs at least 20"
    assert "equal" in (fit_power_law(np.ones(50), min_evals=20).failed or "")


def _digits_mlp(seed: int) -> nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))


def test_trained_layers_differ_from_their_reinitialized_copy() -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = torch.tensor(digits.data / 16.0, dtype=torch.float32), torch.tensor(digits.target)
    trained = _digits_mlp(0)
    optimizer = torch.optim.Adam(trained.parameters(), lr=1e-2)
    batches = torch.Generator().manual_seed(0)
    for _ in range(300):  # ~1 s; fits the training set
        idx = torch.randint(0, len(x), (128,), generator=batches)
        optimizer.zero_grad()
        nn.functional.cross_entropy(trained(x[idx]), y[idx]).backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    learned, fresh = _weights(trained), _weights(_digits_mlp(1))
    for hidden in ("0", "2"):  # 128×64 and 64×128: observed 14 and 11 spikes after training, none before
        assert learned.module_metrics[hidden]["weight_spikes"] >= 5
        assert fresh.module_metrics[hidden]["weight_spikes"] == 0
        assert "weight_alpha" in learned.module_metrics[hidden] and "weight_alpha" not in fresh.module_metrics[hidden]
    (untrained,) = [f for f in fresh.findings if f.id == "weights.under_trained"]  # one fact, once
    assert untrained.module is None and untrained.evidence["modules"] == "0, 2"
    assert untrained.severity is auditor.Severity.WARN and "2 layers look untrained" in untrained.message
    assert not [f for f in learned.findings if f.id == "weights.under_trained"]
    assert {fig.id for fig in learned.figures} == {"weights.alpha_by_layer", "weights.esd"}


def test_a_band_upside_down_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "audit.toml"
    config.write_text("[analyses.weights]\nover_trained_alpha = 7.0\n", encoding="utf-8")
    with pytest.raises(auditor.ConfigError, match="over_trained_alpha"):
        auditor.load_config(config)


def test_conv_layers_as_kernel_positions_by_default_or_unfolded() -> None:
    model = nn.Sequential(nn.Conv2d(8, 16, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))
    by_position = {row[0]: row for row in _weights(model).tables[0].rows}
    unfolded = {row[0]: row for row in _weights(model, conv_matrices="unfolded").tables[0].rows}
    assert by_position["0"][1] == "9 × 16×8" and by_position["0"][-1] == "rejected: noise"  # 72 eigenvalues, fresh
    assert unfolded["0"][1] == "72×16" and unfolded["0"][-1] == "16 nonzero eigenvalues"
    assert set(by_position) == {"0", "4"}  # named_modules() names; the others have no weights


def test_shared_weights_are_read_once_and_attention_as_stored() -> None:
    model = nn.Sequential(nn.Embedding(40, 24), nn.Linear(24, 40, bias=False), nn.MultiheadAttention(24, 2))
    model[1].weight = model[0].weight  # tied, as a language model's head and its embeddings
    section = _weights(model)
    rows = {row[0]: row for row in section.tables[0].rows}
    assert section.details["skipped"] == {"1": "shares its weight with 0"}
    assert rows["2"][1] == "72×24" and rows["2.out_proj"][1] == "24×24"  # packed q, k, v as one matrix


def test_non_finite_weights_fail_and_the_rest_is_still_read() -> None:
    model = nn.Sequential(nn.Linear(40, 30), nn.Linear(30, 20))
    with torch.no_grad():
        model[1].weight[3, 4] = float("nan")
    section = _weights(model)
    broken = _only(section, "weights.non_finite")
    assert broken.module == "1" and broken.severity == auditor.Severity.FAIL
    assert broken.message == "1 holds 1 NaN and 0 Inf of its 600 weights: every output computed from them is NaN or Inf."
    assert set(section.module_metrics) == {"0"} and section.error is None


def test_the_python_api_audits_the_weights_alone_and_refuses_a_data_analysis() -> None:
    model = _digits_mlp(0)
    report = auditor.audit(model, None)
    assert [s.id for s in report.sections] == ["weights"] and report.metadata.n_samples == 0
    assert report.metadata.modality == "none" and report.metadata.data_fingerprint is None
    assert report.not_run["gradients"] == "no audit data was given (pass --data to run it)"
    assert [m.name for m in report.modules] == [name for name, _ in model.named_modules()]
    with pytest.raises(auditor.ConfigError, match="gradients reads audit data"):
        auditor.audit(model, None, analyses=["weights", "gradients"])


def test_the_cli_runs_the_weights_without_data(run_cli: Callable[..., CliResult], tmp_path: Path,
                                                tiny_cnn_safetensors: Path) -> None:
    from tests.models import TinyCNN

    out = tmp_path / "audit"
    result = run_cli("run", "--model", "tests.models:build_tiny_cnn", "--weights", tiny_cnn_safetensors,
                     "--analyses", "weights", "--out", out, "--formats", "json,html", "--quiet")
    assert result.exit_code == 0, result.stderr
    assert "no --data given" in result.stderr
    saved = json.loads((out / "audit.json").read_text())
    assert [s["id"] for s in saved["sections"]] == ["weights"]
    names = {name for name, _ in TinyCNN().named_modules()}
    assert set(saved["sections"][0]["module_metrics"]) == {"conv", "fc"} <= names
    assert "none: the weights alone" in (out / "report.html").read_text()
    card = run_cli("card", out)
    assert card.exit_code == 0 and "| Data | none: an audit of the weights alone |" in card.stdout

    refused = run_cli("run", "--model", "tests.models:build_tiny_cnn", "--analyses", "gradients", "--out", out)
    assert refused.exit_code == 2 and "gradients reads audit data" in refused.stderr
    plan = run_cli("run", "--model", "tests.models:build_tiny_cnn", "--plan")
    assert plan.exit_code == 0 and "no audit data" in plan.stdout and "not run: no audit data" in plan.stdout


def test_the_demo_digits_cnn_against_its_reinitialized_copy(_auditor_cache_dir: Path) -> None:
    from safetensors.torch import load_file

    from auditor.demo import digits

    info = digits.prepare(_auditor_cache_dir)
    trained = digits.build_model()
    trained.load_state_dict(load_file(str(info["weights"])))
    learned, fresh = _weights(trained), _weights(digits.build_model())
    for conv in ("features.conv2", "features.conv3"):  # 9 positions × 32×16 and × 64×32
        assert learned.module_metrics[conv]["weight_spikes"] >= 1 and "weight_alpha" in learned.module_metrics[conv]
        assert fresh.module_metrics[conv]["weight_spikes"] == 0 and "weight_alpha" not in fresh.module_metrics[conv]


def test_a_two_class_softmax_head_with_opposite_rows_is_not_a_rank_collapse() -> None:
    """Softmax ignores a shift shared by every logit: a two-class logistic head's rows are w and -w, rank 1 of 2
    by construction. A hidden layer of the same rank would have collapsed."""
    body, head = nn.Linear(8, 16), nn.Linear(16, 2)
    with torch.no_grad():
        w = _gaussian(1, 16)
        head.weight.copy_(torch.cat([w, -w]))
        body.weight.copy_(_gaussian(16, 8))
    section = _weights(nn.Sequential(body, nn.ReLU(), head))
    assert section.module_metrics["2"]["weight_rank_fraction"] == pytest.approx(0.5)
    assert not [f for f in section.findings if f.id == "weights.rank_collapse"]
    hidden = nn.Linear(16, 16)
    with torch.no_grad():
        hidden.weight.copy_(_gaussian(16, 2) @ _gaussian(2, 16, seed=1))  # rank 2 of 16, not the head
    section = _weights(nn.Sequential(body, nn.ReLU(), hidden, nn.ReLU(), nn.Linear(16, 3)))
    assert _only(section, "weights.rank_collapse").module == "2"
