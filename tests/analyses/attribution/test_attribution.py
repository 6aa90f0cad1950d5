"""Input attributions on models built so the answer is known: one region, one token."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from captum.attr import IntegratedGradients
from torch import nn

import auditor
from auditor.analyses import run_one
from auditor.analyses.attribution import Attribution, AttributionParams
from auditor.kit.captum import internal_batch_size, per_sample_bytes
from auditor.pipeline import _in_memory_data, _wrap_module
from auditor.subject import build_subject
from auditor.subject.data import by_length
from tests.contexts import make_context


class Corner(nn.Module):
    """Zeroes a feature map outside its top-left 3×3 corner."""

    def __init__(self) -> None:
        super().__init__()
        mask = torch.zeros(1, 1, 8, 8)
        mask[..., :3, :3] = 1.0
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask


class OneRegion(nn.Module):
    """Reads only the top-left 3×3 corner of an 8×8 image: a conv map masked outside it, then a head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, kernel_size=1)
        self.act = nn.ReLU()
        self.corner = Corner()
        self.head = nn.Linear(4 * 64, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.corner(self.act(self.conv(x))).flatten(1))


def _images(n: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 8, 8, generator=g) + 0.1, torch.arange(n) % 3


def test_gradient_methods_give_the_region_all_the_attribution_and_occlusion_gradcam_rank_it_first() -> None:
    torch.manual_seed(0)
    model, (x, y) = OneRegion().eval(), _images()
    params = AttributionParams(methods=("integrated_gradients", "saliency", "occlusion"), samples=8, n_steps=16,
                               examples_per_class=1, misclassified=0, occlusion_window=2,
                               gradcam_layers=("corner",))
    ctx = make_context(model, x, y, batch_size=8)
    analysis = Attribution(params)
    # the maps themselves, from the analysis's own helpers
    from auditor.analyses.attribution.image import ImageAttribution as _ImageAttribution

    runner = _ImageAttribution(params, ctx)
    shown = [0, 1, 2]
    inputs, target = runner._inputs(shown), runner.targets[shown]
    outside = torch.ones(8, 8, dtype=torch.bool)
    outside[:3, :3] = False
    for method in ("saliency", "occlusion"):
        maps = runner._method(method, inputs, target).sum(dim=1)  # (samples, 8, 8)
        if method == "saliency":
            assert torch.count_nonzero(maps[:, outside]) == 0 and bool((maps[:, ~outside].abs() > 0).any())
        for heat in maps:  # occlusion: the strongest cell lies in the region
            flat = heat.abs().flatten().argmax()
            assert not outside.flatten()[flat]
    ig = IntegratedGradients(runner.forward).attribute(inputs, target=target, n_steps=16).sum(dim=1)
    assert torch.count_nonzero(ig[:, outside]) == 0
    for cam in runner._gradcam("corner", inputs, target):
        assert not outside.flatten()[cam.flatten().argmax()]
    section = run_one(analysis, ctx)
    assert section.error is None and section.metrics["ig_relative_delta"] < 0.05
    assert [f.id for f in section.figures][:1] == ["attribution.maps.1"]
    regions = section.details["class_regions"]
    for grid in regions.values():  # per class, every cell outside the corner is exactly zero
        assert all(v == 0.0 for r, row in enumerate(grid) for c, v in enumerate(row) if r >= 3 or c >= 3)


class OneToken(nn.Module):
    """Text: the decision reads the embedding of the second token only ([CLS] is the first)."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.embeddings = nn.Embedding(vocab, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.embeddings(input_ids)[:, 1])


def _tokenizer(tmp_path: Path, extra: list[str]):  # -> BertTokenizerFast
    from transformers import BertTokenizerFast

    from tests.conftest import SPECIAL_TOKENS, WORDS

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join([*SPECIAL_TOKENS, *WORDS, *extra]) + "\n", encoding="utf-8")
    return BertTokenizerFast(vocab=str(vocab))


def test_text_attribution_goes_to_the_one_token_read_and_word_pieces_merge(tmp_path: Path) -> None:
    tokenizer = _tokenizer(tmp_path, ["un", "##believ", "##able"])
    torch.manual_seed(0)
    model = OneToken(len(tokenizer)).eval()
    texts = ["unbelievable film", "the plot was bad", "great story", "<script>alert(1)</script> awful",
             "i loved it", "really boring"]
    data = {"text": texts, "label": ["positive", "negative", "positive", "negative", "positive", "negative"]}
    model.class_names = ["negative", "positive"]
    report = auditor.audit(model, data, tokenizer=tokenizer, batch_size=4, analyses=["attribution"],
                           config=auditor.AuditConfig.model_validate(
                               {"analyses": {"attribution": {"samples": 6, "n_steps": 8, "examples_per_class": 3}}}))
    section = report.section("attribution")
    assert section.error is None, section.error
    shown = {t["index"]: t for t in section.details["texts"]}
    first = shown[[texts[i] for i in by_length(texts)].index("unbelievable film")]["words"]  # texts: shortest first
    assert [w for w, _, _ in first] == ["unbelievable", "film"]  # un ##believ ##able: one word
    assert first[0][1] != 0.0 and first[1][1] == 0.0  # only the second token ("un", the word's first piece) is read
    for t in shown.values():
        assert sum(1 for _, value, _ in t["words"] if value != 0.0) <= 1
    ranking = section.details["words"]
    assert {item["word"] for items in ranking.values() for item in items} >= {"unbelievable"}
    from auditor.report.html import render_html

    html = render_html(report)
    body = html.split("<main>", 1)[1]
    assert "<script>alert" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    from auditor.report.pdf import render_pdf
    from pypdf import PdfReader
    import io

    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(render_pdf(report))).pages)
    assert "<script>alert(1)</script>" in re.sub(r"\s+", "", text)  # shown as text in the PDF too


class Wide(nn.Module):
    """Many channels at full resolution: a sample's forward keeps ~2 MB, so 32 steps × 8 samples would hold ~0.5 GB."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 256, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(256, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(torch.relu(self.conv(x))).flatten(1))


def test_the_memory_budget_sets_captums_internal_batch_and_leaves_the_numbers_alone() -> None:
    torch.manual_seed(0)
    model = Wide().eval()
    x, y = torch.rand(8, 3, 32, 32), torch.arange(8) % 2
    subject = build_subject(_wrap_module(model, None), _in_memory_data((x, y), max_samples=100, seed=0),
                            auditor.AuditConfig(batch_size=8))
    per_sample = per_sample_bytes(subject)
    assert per_sample >= 256 * 32 * 32 * 4  # the conv's output alone
    rows = internal_batch_size(subject, budget_mb=16)
    assert rows * 2 * per_sample <= 16 * 2**20 and rows < 8 * 32  # Captum's default holds all 256 rows at once
    forward = lambda inputs: torch.log_softmax(model(inputs), dim=1)  # noqa: E731
    bounded = IntegratedGradients(forward).attribute(x, target=y, n_steps=32, internal_batch_size=rows)
    default = IntegratedGradients(forward).attribute(x, target=y, n_steps=32)
    assert torch.allclose(bounded, default, atol=1e-6)
    ctx = make_context(model, x, y, config=auditor.AuditConfig.model_validate(
        {"batch_size": 8, "analyses": {"attribution": {"memory_budget_mb": 16, "samples": 8, "n_steps": 8}}}))
    section = run_one(Attribution(AttributionParams(memory_budget_mb=16, samples=8, n_steps=8)), ctx)
    assert section.error is None and section.metrics["ig_internal_batch_size"] == rows


def test_a_model_that_cannot_converge_in_two_steps_is_flagged() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3)).eval()
    with torch.no_grad():
        for layer in (model[0], model[2]):
            layer.weight.mul_(6.0)  # saturating tanh: a curved path that two steps cannot follow
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 4, generator=g) * 3, torch.arange(32) % 3
    section = run_one(Attribution(AttributionParams(n_steps=2, samples=32, convergence_tolerance=0.01)),
                      make_context(model, x, y))
    assert [f.id for f in section.findings] == ["attribution.ig_not_converged"]
    fine = run_one(Attribution(AttributionParams(n_steps=200, samples=32, convergence_tolerance=0.01)),
                   make_context(model, x, y))
    assert fine.findings == [] and fine.metrics["ig_relative_delta"] < 0.01
    assert {f.id for f in fine.figures} == {"attribution.features"}


def test_a_bare_encoder_is_not_applicable(tiny_encoder_dir: Path, text_csv: Path) -> None:
    report = auditor.audit(str(tiny_encoder_dir), str(text_csv))
    assert "bare encoder" in report.not_run["attribution"]


def test_a_vision_transformer_gets_grad_cam_on_its_patch_tokens(tiny_vit_dir: Path, image_folder: Path) -> None:
    report = auditor.audit(str(tiny_vit_dir), str(image_folder), analyses=["attribution"], batch_size=4,
                           config=auditor.AuditConfig.model_validate(
                               {"analyses": {"attribution": {"samples": 4, "n_steps": 4, "examples_per_class": 1}}}))
    section = report.section("attribution")
    assert section.error is None, section.error
    assert any(m.startswith("Grad-CAM on vit.") for m in section.details["methods"])  # the last token layer
    assert section.figures and section.figures[0].id == "attribution.maps.1"


def test_token_gradcam_puts_the_map_on_the_patch_that_decides() -> None:
    """A toy ViT-shaped layer: 1 class token + a 2×2 grid of patch tokens where only patch 3 (bottom right)
    carries anything, as the masked conv map does for the CNN above."""
    from auditor.analyses.attribution import token_gradcam

    class Tokens(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, 1, 4, 4) -> (batch, 5, 4): cls + 4 patches
            patches = x.unfold(2, 2, 2).unfold(3, 2, 2).reshape(x.shape[0], 4, 4)
            keep = torch.tensor([0.0, 0.0, 0.0, 1.0]).view(1, 4, 1)
            return torch.cat([torch.zeros_like(patches[:, :1]), patches * keep], dim=1)

    class Toy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tokens, self.head = Tokens(), nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.tokens(x)[:, 4])

    torch.manual_seed(0)
    model = Toy()
    with torch.no_grad():
        model.head.weight.abs_()
    x = torch.rand(3, 1, 4, 4) + 0.5
    forward = lambda inputs: torch.log_softmax(model(inputs), dim=1)  # noqa: E731
    for cam in token_gradcam(forward, model.tokens, x, torch.zeros(3, dtype=torch.long)):
        assert cam.shape == (4, 4) and float(cam[2:, 2:].mean()) > 0 and float(cam[0, 0]) == 0.0
