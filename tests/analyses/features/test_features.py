"""Feature visualization on models whose preferred input is known by construction."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import torch
from torch import nn

import auditor
from auditor.analyses import run_one
from auditor.analyses.features import Features, FeaturesParams
from auditor.analyses.features.run import Run as _Run
from auditor.analyses.features.gallery import GALLERY_BUDGET_BYTES
from auditor.report.io import save_report
from auditor.subject.data import by_length
from tests.contexts import make_context


class BlockReader(nn.Module):
    """Unit 0 of `lin` is the mean of one 4×4 block of a 16×16 grey image; units 1, 2 read elsewhere."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(256, 3)
        self.head = nn.Linear(3, 3)
        block = torch.zeros(16, 16)
        block[2:6, 9:13] = 1.0 / 16
        with torch.no_grad():
            self.lin.weight.zero_()
            self.lin.bias.zero_()
            self.lin.weight[0] = block.flatten()
            self.lin.weight[1, :128] = 1.0 / 128
            self.lin.weight[2, 128:] = 1.0 / 128

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lin(x.flatten(1)))


class EdgeConv(nn.Module):
    """One conv channel with a vertical-edge kernel (dark left, bright right), a ReLU, and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
        self.act = nn.ReLU()
        self.head = nn.Linear(256, 3)
        with torch.no_grad():
            self.conv.weight[:] = torch.tensor([[-1.0, 0.0, 1.0]] * 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.conv(x)).flatten(1))


def _images(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 16, 16, generator=g), torch.arange(n) % 3


def _optimize(model: nn.Module, module: str, unit: int, **params: object) -> tuple[torch.Tensor, object]:
    x, y = _images()
    p = FeaturesParams(modules=(module,), units={module: (unit,)}, **params)  # type: ignore[arg-type]
    ctx = make_context(model.eval(), x, y, batch_size=8, analyses=[Features(p)])
    run = _Run(p, ctx)
    views = run.choose(module)
    images = run._optimize(module, views, run._input_range())
    return images[0, 0], views[0]


def _random_best(model: nn.Module, module: str, unit: int, objective: str) -> float:
    g = torch.Generator().manual_seed(1)
    return _best(model, module, unit, objective, torch.rand(256, 1, 16, 16, generator=g))


def _best(model: nn.Module, module: str, unit: int, objective: str, noise: torch.Tensor) -> float:
    """The largest value of the objective over some inputs."""
    from auditor.analyses.features.units import output_of, unit_values

    target = dict(model.named_modules())[module]
    with torch.no_grad(), output_of(target) as kept:
        model(noise)
    return float(unit_values(kept["out"], target, torch.full((len(noise),), unit), objective).max())  # type: ignore[arg-type]


def test_a_linear_unit_reading_one_block_comes_out_as_a_bright_block() -> None:
    model = BlockReader()
    image, view = _optimize(model, "lin", 0)
    block = torch.zeros(16, 16, dtype=torch.bool)
    block[2:6, 9:13] = True
    assert float(image[block].mean()) > 0.9  # the valid range read from the data is [0, 1]
    assert float(image[block].mean()) - float(image[~block].mean()) > 0.3
    assert view.optimized_objective > view.real_objective == pytest.approx(_best(model, "lin", 0, "channel", _images()[0]))
    assert view.optimized_objective > _random_best(model, "lin", 0, "channel")


@pytest.mark.parametrize("objective", ["neuron", "channel"])
def test_a_vertical_edge_channel_gets_an_edge_at_the_centre_or_stripes(objective: str) -> None:
    model = EdgeConv()
    image, view = _optimize(model, "act", 0, objective=objective)
    if objective == "neuron":  # the centre position (8, 8) reads columns 7..9 of rows 7..9: dark left, bright right
        assert float(image[7:10, 9].mean()) - float(image[7:10, 7].mean()) > 0.6
        assert view.optimized_objective > _random_best(model, "act", 0, "neuron")
    else:  # every position gains from an edge: vertical stripes, edges across columns, not down them
        across = (image[:, 1:] - image[:, :-1]).abs().mean()
        down = (image[1:] - image[:-1]).abs().mean()
        assert float(across) > 2 * float(down)
        rises = (image[:, 1:] - image[:, :-1] > 0.3).sum(dim=1)  # dark-to-bright steps in each row
        assert float(rises.float().mean()) >= 2  # stripes, not one edge
        assert view.optimized_objective > _random_best(model, "act", 0, "channel")
    # beats every real sample: the channel mean against the best real mean (the capture's pooled values),
    # the centre against the best real value anywhere in the map (the capture's top-k)
    real = _best(model, "act", 0, "channel" if objective == "channel" else "peak", _images()[0])
    assert view.optimized_objective > view.real_objective == pytest.approx(real)


def test_the_top_examples_are_the_true_top_by_activation_and_by_relevance() -> None:
    torch.manual_seed(0)
    model = EdgeConv().eval()
    with torch.no_grad():
        model.head.weight.normal_()
    x, y = _images(40)
    p = FeaturesParams(modules=("act",), units={"act": (0,)}, top_k=6, examples=5, steps=2, feature_maps=False)
    section = run_one(Features(p), make_context(model, x, y, batch_size=8, analyses=[Features(p)]))
    unit = section.details["modules"][0]["units"][0]
    with torch.no_grad():
        act = model.act(model.conv(x))  # (40, 1, 16, 16)
    peak = act.flatten(1).max(dim=1)
    truth = torch.argsort(peak.values, descending=True)[:5].tolist()
    assert [e["sample"] for e in unit["top_by_activation"]] == truth
    assert [e["position"] for e in unit["top_by_activation"]] == peak.indices[truth].tolist()
    assert unit["max_real_activation"] == pytest.approx(float(peak.values.max()))
    # relevance: gradient × activation of the unit toward the labelled class's log-probability, by hand
    a = model.act(model.conv(x))
    logp = torch.log_softmax(model.head(a.flatten(1)), dim=1).gather(1, y[:, None]).sum()
    (g,) = torch.autograd.grad(logp, [a])
    relevance = (g * a).flatten(1).sum(dim=1).detach()
    assert [e["sample"] for e in unit["top_by_relevance"]] == torch.argsort(relevance, descending=True)[:5].tolist()


class Planted(nn.Module):
    """Text: a detector unit fires on one planted token (its embedding is the detector's weight)."""

    def __init__(self, vocab: int, planted: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.embeddings = nn.Embedding(vocab, 16)
        self.detector = nn.Linear(16, 4)
        self.act = nn.ReLU()
        self.head = nn.Linear(4, 2)
        with torch.no_grad():
            self.embeddings.weight.copy_(torch.randn(vocab, 16, generator=g) * 0.5)
            direction = torch.randn(16, generator=g)
            self.embeddings.weight[planted] = 2.0 * direction / direction.norm()
            self.detector.weight.copy_(torch.randn(4, 16, generator=g) * 0.3)
            self.detector.weight[0] = direction / direction.norm()
            self.detector.bias.zero_()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.act(self.detector(self.embeddings(input_ids)))
        return self.head(hidden.max(dim=1).values)


def _tokenizer(tmp_path: Path, extra: list[str]):  # -> BertTokenizerFast
    from transformers import BertTokenizerFast

    from tests.conftest import SPECIAL_TOKENS, WORDS

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join([*SPECIAL_TOKENS, *WORDS, *extra]) + "\n", encoding="utf-8")
    return BertTokenizerFast(vocab=str(vocab))


def test_the_token_search_finds_the_planted_token_and_snippets_are_escaped(tmp_path: Path) -> None:
    tokenizer = _tokenizer(tmp_path, ["zebra", "<", ">", "/", "script", "alert"])
    planted = tokenizer.convert_tokens_to_ids("zebra")
    model = Planted(len(tokenizer), planted).eval()
    model.class_names = ["negative", "positive"]
    texts = ["a great film", "the plot was bad", "<script>alert(1)</script> zebra awful", "i loved it", "really boring",
             "nice food and good service", "the worst room", "we enjoyed it"]
    data = {"text": texts, "label": ["positive", "negative"] * 4}
    config = auditor.AuditConfig.model_validate({"batch_size": 4, "analyses": {"features": {
        "modules": ["act"], "units": {"act": [0]}, "search_steps": 6, "search_candidates": 32}}})
    report = auditor.audit(model, data, tokenizer=tokenizer, analyses=["features"], config=config)
    section = report.section("features")
    assert section.error is None
    unit = section.details["text_units"][0]["units"][0]
    assert "zebra" in unit["search"]["tokens"]
    assert unit["search"]["value"] == pytest.approx(unit["max_real"])  # the one real sample holding it
    top = unit["by_activation"][0]
    audited = [texts[i] for i in by_length(texts)]  # the audit's order: shortest first
    assert audited[top["sample"]] == texts[2] and top["token"] == "zebra" and top["before"].endswith("< / script >")  # raw in the data
    assert section.module_metrics["act"]["max_optimized_activation"] == unit["search"]["value"]
    paths = save_report(report, tmp_path / "out", formats=("html",))
    html = Path(paths["html"]).read_text(encoding="utf-8")
    assert "< / script >" not in html and "&lt; / script &gt;" in html  # the tokens of </script>, escaped
    assert "<mark>" in html and "zebra" in html


def test_the_section_renders_in_html_and_pdf_within_its_size_budget(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 8, 3, padding=1),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()
    x, y = _images(24)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = auditor.AuditConfig.model_validate({"batch_size": 8, "analyses": {"features": {"steps": 16}}})
    report = auditor.audit(model, (x, y), analyses=["features"], config=config)
    section = report.section("features")
    assert section.error is None
    ids = [f.id for f in section.figures]
    assert ids == ["features.gallery.1", "features.gallery.4", "features.gallery.7", "features.maps.1",
                   "features.maps.4"]
    assert set(section.module_metrics) == {"1", "4", "7"}
    for figure in section.figures:
        assert len(base64.b64decode(figure.data_base64)) <= GALLERY_BUDGET_BYTES
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    paths = save_report(report, tmp_path, formats=("html", "pdf"))
    html = Path(paths["html"]).read_text(encoding="utf-8")
    assert "Units of 4" in html and "Feature maps of 1" in html
    assert Path(paths["pdf"]).read_bytes()[:5] == b"%PDF-"


def test_attention_heads_of_a_transformer_are_read_with_eager_attention_and_restored(tiny_bert_dir: Path,
                                                                                      text_csv: Path) -> None:
    from auditor.analyses.features.attention import eager_attention

    config = auditor.AuditConfig.model_validate({"batch_size": 4, "analyses": {"features": {
        "search_steps": 2, "search_candidates": 8, "search_units": 1, "units_per_module": 2}}})
    report = auditor.audit(str(tiny_bert_dir), str(text_csv), analyses=["features"], config=config)
    section = report.section("features")
    assert section.error is None
    attention = section.details["attention"]
    assert attention["heads"] == 2 and len(attention["layers"]) == 2
    for layer in attention["layers"]:
        assert all(0.0 <= d for d in layer["distance"]) and all(e > 0 for e in layer["entropy"])
        assert section.module_metrics[layer["module"]]["attention_entropy/0"] == layer["entropy"][0]
    assert {"features.attention_heads", "features.attention_patterns.0"} <= {f.id for f in section.figures}
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(str(tiny_bert_dir))
    before = model.config._attn_implementation
    assert before != "eager"
    with pytest.raises(RuntimeError), eager_attention(model):
        assert model.config._attn_implementation == "eager"
        raise RuntimeError("the forward failed")
    assert model.config._attn_implementation == before


def test_a_vision_transformer_gets_galleries_on_the_processor_range_and_its_heads(tiny_vit_dir: Path,
                                                                                 image_folder: Path) -> None:
    config = auditor.AuditConfig.model_validate({"batch_size": 4, "analyses": {"features": {
        "steps": 8, "units_per_module": 2, "attention_samples": 4}}})
    report = auditor.audit(str(tiny_vit_dir), str(image_folder), analyses=["features"], config=config)
    section = report.section("features")
    assert section.error is None
    ids = [f.id for f in section.figures]
    assert "features.gallery.classifier" in ids and "features.attention_heads" in ids
    assert not any(i.startswith("features.maps.") for i in ids)  # token outputs have no spatial map
    assert section.details["attention"]["heads"] == 2
    assert {"max_real_activation", "max_optimized_activation"} <= set(section.module_metrics["classifier"])


def test_a_bare_encoder_gets_its_most_variable_units_without_relevance(tiny_encoder_dir: Path, text_csv: Path) -> None:
    config = auditor.AuditConfig.model_validate({"batch_size": 4, "analyses": {"features": {
        "search_steps": 2, "search_candidates": 8, "search_units": 1, "units_per_module": 2, "attention": False}}})
    report = auditor.audit(str(tiny_encoder_dir), str(text_csv), analyses=["features"], config=config)
    section = report.section("features")
    assert section.error is None and "variance over the data" in section.summary
    for group in section.details["text_units"]:
        assert all(u["by_relevance"] == [] for u in group["units"])
    assert all("head" not in name for name in section.module_metrics)


class LoudMarkers(Planted):
    """The detector fires hardest on [SEP] and [PAD] (their embeddings are its weight, doubled); the head's two
    logits are w and −w, so their relevances mirror each other exactly."""

    def __init__(self, vocab: int, planted: int, markers: list[int]) -> None:
        super().__init__(vocab, planted)
        with torch.no_grad():
            for marker in markers:
                self.embeddings.weight[marker] = 2.0 * self.detector.weight[0]
            w = torch.tensor([1.0, -0.5, 0.25, 0.5])
            self.head.weight.copy_(torch.stack([w, -w]))
            self.head.bias.zero_()


def test_top_by_relevance_lands_on_text_tokens_heads_name_their_classes_and_mirrored_lists_show_once(
        tmp_path: Path) -> None:
    tokenizer = _tokenizer(tmp_path, ["zebra"])
    markers = [tokenizer.sep_token_id, tokenizer.pad_token_id]
    model = LoudMarkers(len(tokenizer), tokenizer.convert_tokens_to_ids("zebra"), markers).eval()
    model.class_names = ["negative", "positive"]
    texts = ["a great film", "the plot was bad", "zebra awful", "i loved it", "really boring", "nice food", "bad",
             "we enjoyed it"]
    config = auditor.AuditConfig.model_validate({"batch_size": 4, "analyses": {"features": {
        "modules": ["act", "head"], "units": {"act": [0], "head": [0, 1]}, "search_steps": 1,
        "search_candidates": 4}}})
    report = auditor.audit(model, {"text": texts, "label": ["positive", "negative"] * 4}, tokenizer=tokenizer,
                           analyses=["features"], config=config)
    section = report.section("features")
    assert section.error is None
    groups = {g["module"]: g["units"] for g in section.details["text_units"]}
    special = {"[CLS]", "[SEP]", "[PAD]", ""}
    (act,) = groups["act"]
    assert act["by_relevance"] and all(s["token"] not in special for s in act["by_relevance"])
    first, second = groups["head"]
    assert (first["label"], second["label"]) == ("class negative", "class positive")
    assert first["by_relevance"] and second["by_relevance"] == [] and second["relevance_same_as"] == "class negative"
    html = Path(save_report(report, tmp_path / "out", formats=("html",))["html"]).read_text(encoding="utf-8")
    assert "<strong>class positive</strong>" in html and "the same samples with the same relevance as class negative" \
        in html


class SpecialTokenUnit(nn.Module):
    """Text: unit 0 fires hardest on [CLS] (5.0), and within the text on each word by a value set by its id."""

    def __init__(self, vocab: int, cls_id: int) -> None:
        super().__init__()
        self.embeddings = nn.Embedding(vocab, 2)
        self.act = nn.ReLU()
        self.head = nn.Linear(2, 2)
        with torch.no_grad():
            values = torch.tensor([(i % 37) / 37 for i in range(vocab)], dtype=torch.float64)
            self.embeddings.weight.zero_()
            self.embeddings.weight[:, 0] = values.float()
            self.embeddings.weight[cls_id, 0] = 5.0
            self.embeddings.weight[:, 1] = 1.0
            self.head.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
            self.head.bias.zero_()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.act(self.embeddings(input_ids))
        return self.head(hidden.mean(dim=1))


def test_a_unit_of_a_special_token_is_said_once_and_its_snippets_mark_the_texts_own_peaks(tmp_path: Path) -> None:
    tokenizer = _tokenizer(tmp_path, [])
    model = SpecialTokenUnit(len(tokenizer), tokenizer.cls_token_id).eval()
    model.class_names = ["negative", "positive"]
    texts = ["a great film", "the plot was bad", "i loved it", "really boring", "nice food and good service",
             "the worst room", "we enjoyed it", "awful"]
    config = auditor.AuditConfig.model_validate({"batch_size": 4, "analyses": {"features": {
        "modules": ["act", "head"], "units": {"act": [0], "head": [0]}, "search_steps": 1, "search_candidates": 4}}})
    report = auditor.audit(model, {"text": texts, "label": ["positive", "negative"] * 4}, tokenizer=tokenizer,
                           analyses=["features"], config=config)
    section = report.section("features")
    assert section.error is None
    groups = {g["module"]: g["units"][0] for g in section.details["text_units"]}
    unit = groups["act"]
    assert unit["peaks_on"] == "[CLS]"  # every top sample peaks on [CLS]: said once
    weight = model.embeddings.weight[:, 0].detach()
    audited = [texts[i] for i in by_length(texts)]  # the audit's order: shortest first
    for snippet in unit["by_activation"]:
        ids = tokenizer(audited[snippet["sample"]])["input_ids"][1:-1]  # the text's own tokens
        best = max(ids, key=lambda i: float(weight[i]))
        assert snippet["token"] == tokenizer.convert_ids_to_tokens(best)
        assert snippet["value"] == pytest.approx(float(weight[best]))
        assert snippet["special_peak"] == {"token": "[CLS]", "value": pytest.approx(5.0)}
    head = groups["head"]  # one position (logits): the snippet is the whole text, nothing marked
    assert head["by_activation"] and all(s["token"] == "" and "[CLS]" not in s["before"] for s in head["by_activation"])
    html = Path(save_report(report, tmp_path / "out", formats=("html",))["html"]).read_text(encoding="utf-8")
    assert "Its largest activations are all on [CLS], a special token" in html
