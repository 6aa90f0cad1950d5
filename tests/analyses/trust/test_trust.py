"""Trust checks on models whose answer is known: a trained CNN, broken explainers, a planted gendered word."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import auditor
from auditor.analyses import run_one
from auditor.analyses.trust import Trust, TrustParams
from auditor.analyses.trust.counterfactual import WordSwapper, default_word_pairs, region_mask, wilson
from auditor.analyses.trust.explainers import ExplainSetup
from auditor.analyses.trust.similarity import rank_correlation, ssim
from tests.contexts import make_context
from tests.models import Bag


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(model: nn.Module, before: dict[str, torch.Tensor]) -> bool:
    after = model.state_dict()
    return before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def identity(setup: ExplainSetup, model: nn.Module, inputs: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """A broken explainer: returns the input itself, whatever the model."""
    return inputs[setup.key].detach().float().sum(dim=1)


def random_maps(setup: ExplainSetup, model: nn.Module, inputs: dict[str, torch.Tensor],
                target: torch.Tensor) -> torch.Tensor:
    """A broken explainer: maps of noise (seeded by the input, so the same samples get the same noise)."""
    x = inputs[setup.key]
    g = torch.Generator().manual_seed(int(x.sum() * 1000) % 2**31)
    return torch.randn(x.shape[0], *x.shape[2:], generator=g)


@pytest.fixture(scope="module")
def trained_digits() -> tuple[nn.Module, np.ndarray, np.ndarray]:
    """A small CNN trained on scikit-learn's digits (full batch, a few seconds): a real model with real maps."""
    from auditor.demo.digits import digits_arrays

    x_tr, y_tr, x_te, y_te = digits_arrays(0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
                          nn.ReLU(), nn.Flatten(), nn.Linear(16 * 8 * 8, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    xs, ys = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    for _ in range(80):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(xs), ys).backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    model.eval()
    optimizer.zero_grad()
    with torch.no_grad():
        accuracy = float((model(torch.from_numpy(x_te)).argmax(1).numpy() == y_te).mean())
    assert accuracy > 0.9
    return model, x_te[:160], y_te[:160]


def test_sanity_and_faithfulness_pass_for_ig_on_a_trained_cnn_and_catch_broken_explainers(
        trained_digits: tuple[nn.Module, np.ndarray, np.ndarray]) -> None:
    model, x, y = trained_digits
    before = _state(model)
    params = TrustParams(methods=("integrated_gradients", "identity", "random"), samples=12, n_steps=8,
                         deletion_steps=8, random_orders=3)
    ctx = make_context(model, x, y, batch_size=64)
    section = run_one(Trust(params, explainers={"identity": identity, "random": random_maps}), ctx)
    assert section.error is None, section.error
    m = section.metrics
    # the trained model's IG maps have nothing in common with the destroyed model's; the identity's are unchanged
    assert abs(m["sanity_correlation/integrated_gradients"]) < 0.3
    assert m["sanity_correlation/identity"] == pytest.approx(1.0)
    failed = {f.evidence["method"] for f in section.findings if f.id == "trust.sanity_failed"}
    assert failed == {"identity", "random"}  # neither depends on the model: both fail, IG passes
    # IG deletes the evidence faster than random orders; noise maps do not
    assert m["deletion_auc/integrated_gradients"] < m["random_deletion_auc"]
    assert m["deletion_p/integrated_gradients"] < 0.05
    assert m["deletion_p/random"] > 0.05
    unfaithful = {f.evidence["method"] for f in section.findings if f.id == "trust.unfaithful"}
    assert "random" in unfaithful and "integrated_gradients" not in unfaithful
    # one module-metrics entry per cascade step, named as named_modules() names them, output first
    steps = section.details["steps"]
    assert steps == ["6", "3", "0"]  # the layers with parameters, output first
    assert set(steps) <= set(dict(model.named_modules())) and set(section.module_metrics) == set(steps)
    assert _same(model, before)  # re-initialization happened on a copy
    assert {f.id for f in section.figures} == {"trust.sanity", "trust.sanity_maps", "trust.faithfulness"}


def test_the_model_is_untouched_when_an_explainer_fails_in_the_middle_of_the_cascade(
        trained_digits: tuple[nn.Module, np.ndarray, np.ndarray]) -> None:
    model, x, y = trained_digits
    before = _state(model)
    calls = [0]

    def breaks(setup: ExplainSetup, model: nn.Module, inputs: dict[str, torch.Tensor],
               target: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        if calls[0] == 3:
            raise RuntimeError("explainer broke")
        return identity(setup, model, inputs, target)

    section = run_one(Trust(TrustParams(methods=("breaks",), samples=4), explainers={"breaks": breaks}),
                      make_context(model, x[:32], y[:32]))
    assert section.error is not None and "explainer broke" in section.error.message
    assert _same(model, before) and all(p.grad is None for p in model.parameters())


def _bag(tokenizer: object, *, planted: bool, fragile: bool = False) -> Bag:
    vocab = tokenizer.get_vocab()  # type: ignore[attr-defined]
    model = Bag(len(vocab)).eval()
    with torch.no_grad():
        for word in ("good", "great", "loved"):
            model.embeddings.weight[vocab[word]] = torch.tensor([0.0, 1.0])
        for word in ("bad", "awful", "boring"):
            model.embeddings.weight[vocab[word]] = torch.tensor([1.0, 0.0])
        if planted:  # "he" pushes toward positive, "she" toward negative, stronger than any sentiment word
            model.embeddings.weight[vocab["he"]] = torch.tensor([0.0, 3.0])
            model.embeddings.weight[vocab["she"]] = torch.tensor([3.0, 0.0])
        if fragile:  # a neutral near-synonym swap (film -> movie) moves it as much
            model.embeddings.weight[vocab["film"]] = torch.tensor([0.0, 3.0])
            model.embeddings.weight[vocab["movie"]] = torch.tensor([3.0, 0.0])
    model.class_names = ["negative", "positive"]  # type: ignore[assignment]
    return model


def _texts() -> dict[str, list[str]]:
    rows = [("he said the film was bad", "negative"), ("she said the film was great", "positive"),
            ("He loved the food", "positive"), ("she found it boring", "negative"),
            ("the story was good", "positive"), ("the room was awful", "negative"),
            ("he thought it was awful", "negative"), ("she loved this place", "positive")]
    return {"text": [t for t, _ in rows], "label": [label for _, label in rows]}


def _tokenizer(tmp_path: Path):  # -> BertTokenizerFast
    from transformers import BertTokenizerFast

    from tests.conftest import SPECIAL_TOKENS, WORDS

    vocab = tmp_path / "vocab.txt"
    extra = [w for w in ("he", "she", "said", "found", "thought", "film", "movie", "hall") if w not in WORDS]
    vocab.write_text("\n".join([*SPECIAL_TOKENS, *WORDS, *extra]) + "\n", encoding="utf-8")
    return BertTokenizerFast(vocab=str(vocab))


@pytest.mark.parametrize("planted", [True, False])
def test_a_model_that_reads_a_planted_gendered_word_flips_on_the_swap_and_one_that_ignores_it_does_not(
        tmp_path: Path, planted: bool) -> None:
    tokenizer = _tokenizer(tmp_path)
    model = _bag(tokenizer, planted=planted)
    config = auditor.AuditConfig.model_validate({"batch_size": 8, "analyses": {"trust": {
        "samples": 4, "n_steps": 4, "deletion_steps": 4, "random_orders": 2}}})
    report = auditor.audit(model, _texts(), tokenizer=tokenizer, analyses=["trust"], config=config)
    section = report.section("trust")
    assert section.error is None, section.error
    m = section.metrics
    assert m["edited_samples"] == 6  # every text with he/she/He
    flagged = [f for f in section.findings if f.id == "trust.protected_feature"]
    if planted:
        # the planted word outweighs every sentiment word: each of the 6 swaps flips the prediction
        assert m["flip_rate"] == 1.0 and len(flagged) == 1
        assert m["protected_share"] > 0.4
    else:
        assert m["flip_rate"] == 0.0 and m["probability_change"] == 0.0 and m["probability_change_abs"] == 0.0
        assert m["protected_share"] == 0.0 and not flagged
    rows = {r[0]: r for r in next(t for t in section.tables if t.id == "trust.protected").rows}
    assert rows["all"][1] == 6 and set(rows) == {"all", "negative", "positive", "control (neutral swaps)"}
    # the control: film -> movie, room -> hall (3 samples), which this model does not read
    assert m["control_edited_samples"] == 3 and m["control_flip_rate"] == 0.0


def test_a_model_as_fragile_to_neutral_swaps_is_not_said_to_rely_on_the_protected_words(tmp_path: Path) -> None:
    tokenizer = _tokenizer(tmp_path)
    model = _bag(tokenizer, planted=True, fragile=True)
    config = auditor.AuditConfig.model_validate({"batch_size": 8, "analyses": {"trust": {
        "samples": 4, "n_steps": 4, "deletion_steps": 4, "random_orders": 2}}})
    section = auditor.audit(model, _texts(), tokenizer=tokenizer, analyses=["trust"], config=config).section("trust")
    m = section.metrics
    assert m["flip_rate"] >= 5 / 6  # the he/she swaps still flip (one is held by the planted "film") ...
    assert m["control_flip_rate"] == pytest.approx(2 / 3)  # ... and so do both film -> movie swaps
    assert m["protected_excess_p"] > 0.05
    assert not [f for f in section.findings if f.id == "trust.protected_feature"]
    assert "fragility, not reliance" in section.summary


class Corner(nn.Module):
    """Reads only the top-left 3×3 corner of an 8×8 image."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, kernel_size=1)
        self.head = nn.Linear(4 * 9, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x))[..., :3, :3].flatten(1))


@pytest.mark.parametrize("box, reads", [((0, 0, 3, 3), True), ((5, 5, 3, 3), False)])
def test_an_image_region_the_model_reads_takes_all_attribution_and_moves_predictions(
        box: tuple[int, int, int, int], reads: bool) -> None:
    torch.manual_seed(0)
    model = Corner().eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(24, 1, 8, 8, generator=g) + 0.1
    with torch.no_grad():
        y = model(x).argmax(1)
    params = TrustParams(methods=("integrated_gradients",), samples=6, n_steps=8, deletion_steps=4,
                         random_orders=2, region="box", region_box=box)
    section = run_one(Trust(params), make_context(model, x, y))
    assert section.error is None, section.error
    m = section.metrics
    if reads:
        assert m["protected_share"] == pytest.approx(1.0) and m["probability_change_abs"] > 0.0
    else:
        assert m["protected_share"] == 0.0 and m["probability_change_abs"] == 0.0 and m["flip_rate"] == 0.0
        assert not [f for f in section.findings if f.id == "trust.protected_feature"]


def test_the_section_renders_in_html_and_pdf_with_its_figures(
        trained_digits: tuple[nn.Module, np.ndarray, np.ndarray]) -> None:
    from pypdf import PdfReader

    from auditor.report.html import render_html
    from auditor.report.pdf import render_pdf

    model, x, y = trained_digits
    config = auditor.AuditConfig.model_validate({"batch_size": 64, "analyses": {"trust": {
        "samples": 4, "n_steps": 4, "deletion_steps": 4, "random_orders": 2, "region": "border"}}})
    report = auditor.audit(model, (x[:64], y[:64]), analyses=["trust"], config=config)
    html = render_html(report)
    assert 'id="section-trust"' in html and "Randomization cascade" in html and "Protected region (border)" in html
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(render_pdf(report))).pages)
    assert "Can the explanations be trusted?" in text and "Deletion and insertion" in text


def test_measures_and_swaps_on_known_inputs() -> None:
    a = torch.arange(16.0).reshape(4, 4)
    assert rank_correlation(a, a * 2 + 1) == pytest.approx(1.0)
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    assert rank_correlation(a, torch.zeros(4, 4)) == 0.0  # a constant map carries no ranking
    assert ssim(a, a) == pytest.approx(1.0) and ssim(a, a.flip(0)) < 0.5
    swap = WordSwapper(default_word_pairs())
    assert swap.swap("He told her that his son met John.") == "She told his that her daughter met Mary."
    assert swap.swap("the theme: shepherd") == "the theme: shepherd"  # whole words only
    mask = region_mask((8, 8), "border", 0.125, None)
    assert int(mask.sum()) == 28 and not mask[1:7, 1:7].any()
    low, high = wilson(0, 10)
    assert low == 0.0 and 0.2 < high < 0.35
