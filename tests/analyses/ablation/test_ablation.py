"""The ablation analysis on models built so that the answer is known."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import auditor
from auditor.analyses import run_one
from auditor.analyses.ablation import AblationParams, ModuleAblation
from auditor.engine.executor import LocalExecutor
from auditor.engine.passes import PatchedPass
from auditor.errors import ConfigError
from auditor.progress import SilentProgress
from auditor.walk.patch import Patch
from tests.contexts import make_context
from tests.models import RESNET_BLOCKS, build_two_stage_resnet


def _onehot_data(n: int, classes: int = 3, *, noise: float = 0.05, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    return nn.functional.one_hot(y, classes).float() + noise * torch.randn(n, classes, generator=g), y


def _run(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, **params: object) -> auditor.Section:
    analysis = ModuleAblation(AblationParams(**params))  # type: ignore[arg-type]
    ctx = make_context(model, x, y, batch_size=16, analyses=[analysis])
    section = run_one(analysis, ctx)
    assert section.error is None, section.error
    return section


def _linear(weight: list[list[float]], bias: list[float]) -> nn.Linear:
    layer = nn.Linear(len(weight[0]), len(weight))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        layer.bias.copy_(torch.tensor(bias))
    return layer


class TwoCarriers(nn.Module):
    """`a` carries the evidence for class 0, `b` for class 1; class 2 wins by the head's bias when neither speaks."""

    def __init__(self) -> None:
        super().__init__()
        self.a = _linear([[3, 0, 0], [0, 0, 0], [0, 0, 0]], [0, 0, 0])
        self.b = _linear([[0, 0, 0], [0, 3, 0], [0, 0, 0]], [0, 0, 0])
        self.head = _linear([[1, 0, 0], [0, 1, 0], [0, 0, 1]], [0, 0, 1.5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.a(x) + self.b(x))


def test_the_branch_carrying_class_0_drops_class_0_only_and_is_named_class_specific() -> None:
    x, y = _onehot_data(150)
    section = _run(TwoCarriers(), x, y, unit_layers="none")
    a, b = section.module_metrics["a"], section.module_metrics["b"]
    assert a["ablation_drop/0"] == pytest.approx(1.0) and a["ablation_drop/1"] == pytest.approx(0.0)
    assert b["ablation_drop/1"] == pytest.approx(1.0) and b["ablation_drop/0"] == pytest.approx(0.0)
    assert a["ablation_drop"] == pytest.approx(1 / 3) and a["ablation_drop_low"] < 1 / 3 < a["ablation_drop_high"]
    specific = {(f.module, f.evidence["class"]) for f in section.findings if f.id == "ablation.class_specific"}
    assert {("a", "0"), ("b", "1")} <= specific
    assert all(m not in specific for m in [("head", "0"), ("head", "1")])  # the head collapses: not one class


class MainPathAndCarriers(nn.Module):
    """`stem` and `head` are the path every sample takes: replacing either by its mean gives every sample the
    same logits, [1, 1, 1.5], so the model predicts class 2 for all. `a` and `b` carry one class each:
    removing one sends its class to class 2, a drop as large as a third of the samples, but no collapse."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = _linear([[1, 0, 0], [0, 1, 0], [0, 0, 1]], [0, 0, 0])
        self.a = _linear([[3, 0, 0], [0, 0, 0], [0, 0, 0]], [0, 0, 0])
        self.b = _linear([[0, 0, 0], [0, 3, 0], [0, 0, 0]], [0, 0, 0])
        self.head = _linear([[1, 0, 0], [0, 1, 0], [0, 0, 1]], [0, 0, 1.5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        return self.head(self.a(s) + self.b(s))


def test_the_modules_whose_removal_collapses_the_model_are_one_finding_and_the_carriers_keep_theirs() -> None:
    x, y = _onehot_data(150)
    section = _run(MainPathAndCarriers(), x, y, unit_layers="none")
    drops = section.module_metric("ablation_drop")
    assert drops["stem"] == pytest.approx(2 / 3) and drops["head"] == pytest.approx(2 / 3)  # every row is kept
    (path,) = [f for f in section.findings if f.id == "ablation.main_path"]
    assert path.module is None and path.evidence["modules"] == "stem, head" and path.evidence["collapsed_to"] == "2"
    assert "any of 2 modules on its main path" in path.message and "predicts '2' for nearly every sample" in path.message
    critical = sorted(f.module for f in section.findings if f.id == "ablation.critical_module")
    assert critical == ["a", "b"]  # a third of the samples each, and no collapse: they stand out
    assert section.metrics["critical_modules"] == 4 and section.metrics["main_path_modules"] == 2


class CarrierAndDecoy(nn.Module):
    """Both see the input; the output ignores `decoy` (multiplied by zero), so ablating it must cost nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.carrier, self.decoy, self.head = nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.carrier(x))) + 0.0 * self.decoy(x)


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int = 300) -> nn.Module:
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval()


def test_an_ignored_branch_is_redundant_with_an_interval_of_exactly_zero_and_the_carrier_is_critical() -> None:
    """Replacing the carrier (or the head) by its mean gives every sample the same logits: both are on the
    model's main path, one finding for the two; the decoy is in neither."""
    x, y = _onehot_data(240)
    torch.manual_seed(0)
    model = _train(CarrierAndDecoy(), x, y)
    section = _run(model, x, y, unit_layers="none")
    decoy, carrier = section.module_metrics["decoy"], section.module_metrics["carrier"]
    assert decoy["ablation_drop"] == 0.0 and decoy["ablation_drop_low"] == 0.0 and decoy["ablation_drop_high"] == 0.0
    assert decoy["ablation_kl"] == 0.0 and decoy["ablation_changed"] == 0.0
    assert carrier["ablation_drop"] > 0.3 and carrier["ablation_drop_low"] > 0.3
    redundant = [f.module for f in section.findings if f.id == "ablation.redundant"]
    (path,) = [f.evidence["modules"] for f in section.findings if f.id == "ablation.main_path"]
    critical = [f.module for f in section.findings if f.id == "ablation.critical_module"]
    assert redundant == ["decoy"] and path == "carrier, head" and "decoy" not in critical


def test_on_few_samples_nothing_is_called_redundant_the_interval_is_too_wide_for_equivalence() -> None:
    x, y = _onehot_data(240)
    torch.manual_seed(0)
    model = _train(CarrierAndDecoy(), x, y)
    section = _run(model, x[:9], y[:9], unit_layers="none")
    assert [f for f in section.findings if f.id == "ablation.redundant"] == []
    carrier = section.module_metrics["carrier"]
    assert carrier["ablation_drop_high"] - carrier["ablation_drop_low"] > 0.2


class ConstantBranch(nn.Module):
    """`bias_only` has zero weights: its output is the same for every sample."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(3, 3)
        self.bias_only = _linear([[0, 0, 0]] * 3, [0.3, -1.7, 2.1])
        self.head = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.body(x)) + self.bias_only(x))


def test_mean_ablation_of_a_constant_output_changes_nothing_zero_ablation_does() -> None:
    torch.manual_seed(0)
    x, y = _onehot_data(60)
    mean = _run(ConstantBranch(), x, y, unit_layers="none").module_metrics["bias_only"]
    zero = _run(ConstantBranch(), x, y, unit_layers="none", mode="zero").module_metrics["bias_only"]
    assert mean["ablation_kl"] == 0.0 and mean["ablation_drop"] == 0.0 and mean["ablation_loss_increase"] == 0.0
    assert zero["ablation_kl"] > 0.01


def _collapsing_stack() -> nn.Sequential:
    """hidden = relu(x); units 0 and 1 carry classes 0 and 1, class 2 wins by bias when neither is up.
    Mean-ablating any whole layer makes the output constant: every layer collapses it alike."""
    return nn.Sequential(_linear([[1, 0, 0], [0, 1, 0], [0, 0, 1]], [0, 0, 0]), nn.ReLU(),
                         _linear([[3, 0, 0], [0, 3, 0], [0, 0, 0]], [0, 0, 1.5]))


def test_when_every_layer_collapses_the_output_unit_ablation_finds_the_unit_carrying_a_class() -> None:
    x, y = _onehot_data(150)
    section = _run(_collapsing_stack(), x, y)
    layers = {name: section.module_metrics[name]["ablation_drop"] for name in ("0", "1", "2")}
    assert all(v == pytest.approx(2 / 3) for v in layers.values())  # ties: everything predicts class 2
    assert section.details["unit_layers"] == ["1"]  # what feeds the head
    unit0, unit2 = section.module_metrics["1#0"], section.module_metrics["1#2"]
    assert unit0["ablation_drop/0"] == pytest.approx(1.0) and unit0["ablation_drop/1"] == 0.0
    assert unit2["ablation_drop"] == 0.0
    specific = {(f.module, f.evidence["class"]) for f in section.findings if f.id == "ablation.class_specific"}
    assert ("1#0", "0") in specific and ("1#1", "1") in specific
    ranked = next(t for t in section.tables if t.id == "ablation.ranked")
    assert [row[1] for row in ranked.rows][0] == "0"  # ties broken by loss increase: the first layer hurts most


class Residual(nn.Module):
    def __init__(self, scale: float) -> None:
        super().__init__()
        self.ff = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8))
        with torch.no_grad():
            self.ff[2].weight.mul_(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.ff(x)


class ResidualNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(3, 8)
        self.blocks = nn.ModuleList([Residual(s) for s in (0.2, 1.0, 3.0)])
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def test_a_residual_block_is_ablated_by_its_branch_which_costs_less_than_the_stream_and_blocks_differ() -> None:
    x, y = _onehot_data(150, noise=0.5)
    torch.manual_seed(0)
    model = _train(ResidualNet(), x, y, steps=200)
    analysis = ModuleAblation(AblationParams(unit_layers="none"))
    ctx = make_context(model, x, y, batch_size=16, analyses=[analysis])
    section = run_one(analysis, ctx)
    assert section.details["branches"] == {f"blocks.{i}": [f"blocks.{i}.ff.2"] for i in range(3)}
    kl = {i: section.module_metrics[f"blocks.{i}"]["ablation_kl"] for i in range(3)}
    assert len({round(v, 6) for v in kl.values()}) == 3  # each block its own effect
    # Replacing the stream itself (the block's output) costs far more than its branch, for every block.
    means = ctx.capture.unit_means
    stream = LocalExecutor(ctx.subject, ctx.tree, batch_size=16, progress=SilentProgress()).scores(
        [PatchedPass({f"blocks.{i}": Patch(output=means.get(f"blocks.{i}", torch.zeros(8)).float().reshape(1, 8))})
         for i in range(3)])
    clean = torch.log_softmax(ctx.capture.scores.double(), 1)
    for i, scores in enumerate(stream):
        stream_kl = float((clean.exp() * (clean - torch.log_softmax(scores.double(), 1))).sum(1).mean())
        assert stream_kl > kl[i]
    assert "branch" in section.summary


def test_default_granularity_is_every_block_and_leaf_with_parameters_and_config_narrows_it() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Sequential(nn.Linear(6, 6), nn.Tanh()), nn.Linear(6, 3))
    x, y = _onehot_data(30)

    def modules(**params: object) -> set[str]:
        section = _run(model, x, y, unit_layers="none", prune=False, **params)
        return {n for n in section.module_metrics if "#" not in n}

    assert modules() == {"0", "1", "2.0", "2.1", "3"}  # stages of a plain stack (activations too) and leaves with weights
    assert modules(modules="blocks") == {"0", "1", "2.0", "2.1", "3"}
    assert modules(modules="leaves") == {"0", "1", "2.0", "2.1", "3"}
    assert modules(modules="all") == {"0", "1", "2", "2.0", "2.1", "3"}
    assert modules(modules=("2.*",)) == {"2.0", "2.1"}
    with pytest.raises(ConfigError, match="unit_layers"):
        _run(model, x, y, unit_layers=("nope",))


def test_without_labels_accuracy_is_agreement_with_the_intact_predictions() -> None:
    x, _ = _onehot_data(60)
    section = _run(TwoCarriers(), x, None, unit_layers="none")
    a = section.module_metrics["a"]
    assert a["ablation_drop"] == pytest.approx(1 / 3) and "own predictions" in section.summary


class ConvNet(nn.Module):
    """conv (8 kernels, 6 of them nearly zero and unread) -> BatchNorm -> ReLU -> average -> head reading 2 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.head = nn.Linear(8, 2)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0, 1, 1], self.conv.weight[1, 0, 1, 1] = 1.0, -1.0
            self.conv.weight[2:].fill_(1e-3)
            self.conv.bias.zero_()
            self.bn.running_mean.zero_()
            self.bn.running_var.fill_(1.0)
            self.bn.bias.fill_(0.5)  # a zeroed conv channel would come back as 0.5 after the norm
            self.head.weight.zero_()
            self.head.weight[0, 0], self.head.weight[1, 1] = 4.0, 4.0
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.flat(self.pool(self.relu(self.bn(self.conv(x))))))


def test_pruning_zeroes_after_the_batchnorm_and_finds_a_layer_that_uses_a_quarter_of_its_kernels() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(160) % 2
    x = (torch.where(y == 0, 1.0, -1.0).reshape(-1, 1, 1, 1) + 0.1 * torch.randn(160, 1, 6, 6, generator=g))
    model = ConvNet().eval()
    analysis = ModuleAblation(AblationParams(unit_layers="none", prune_fractions=(0.25, 0.5, 0.75)))
    ctx = make_context(model, x, y, batch_size=16, analyses=[analysis])
    section = run_one(analysis, ctx)
    assert section.error is None, section.error
    conv = section.module_metrics["conv"]
    assert conv["prune_accuracy_l1/50"] == pytest.approx(1.0) and conv["prune_accuracy_l1/75"] == pytest.approx(1.0)
    assert conv["prunable_fraction"] == 0.75
    assert [f.module for f in section.findings if f.id == "ablation.prunable_layer"] == ["conv"]
    selection = analysis.select(ctx, ctx.traced, ctx.capture.unit_means)
    step = next(s for s in selection.prune if s.method == "l1" and s.removed == 6)
    assert step.site == "bn"
    with torch.no_grad():
        out = step.patches["bn"].output(model.bn(model.conv(x[:4])))  # type: ignore[operator]
    assert torch.count_nonzero(out[:, 2:]) == 0 and torch.count_nonzero(out[:, :2]) > 0


def test_masking_a_head_keeps_every_earlier_layer_bit_identical_and_changes_its_own(tiny_bert_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tests.conftest import TEXT_ROWS

    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_bert_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    data = {"text": [t for t, _ in TEXT_ROWS], "label": [y for _, y in TEXT_ROWS]}
    analysis = ModuleAblation(AblationParams(unit_layers="none", modules=("bert.pooler",)))
    ctx = make_context(model, data, None, batch_size=12, tokenizer=tokenizer, analyses=[analysis])
    selection = analysis.select(ctx, ctx.traced, ctx.capture.unit_means)
    target = next(t for t in selection.targets if t.name == "bert.encoder.layer.1.attention.self#head1")
    watched = ["bert.embeddings", "bert.encoder.layer.0", "bert.encoder.layer.1.attention.self",
               "bert.encoder.layer.1"]

    def outputs(patches: dict[str, Patch]) -> dict[str, torch.Tensor]:
        seen: dict[str, torch.Tensor] = {}
        handles = [model.get_submodule(n).register_forward_hook(
            lambda m, a, o, n=n: seen.__setitem__(n, (o[0] if isinstance(o, tuple) else o).detach().clone()))
            for n in watched]
        from auditor.walk.patch import patch_many

        try:
            with torch.no_grad(), patch_many(model, patches):
                batch = next(ctx.subject.batches(12))
                ctx.subject.adapter.forward(model, batch.inputs)
        finally:
            for h in handles:
                h.remove()
        return seen

    clean, masked = outputs({}), outputs(dict(target.patches))
    assert torch.equal(clean["bert.embeddings"], masked["bert.embeddings"])
    assert torch.equal(clean["bert.encoder.layer.0"], masked["bert.encoder.layer.0"])
    head_width = 32 // 2
    changed = (clean["bert.encoder.layer.1.attention.self"] != masked["bert.encoder.layer.1.attention.self"])
    assert not changed[..., :head_width].any() and changed[..., head_width:].any()
    assert not torch.equal(clean["bert.encoder.layer.1"], masked["bert.encoder.layer.1"])
    section = run_one(analysis, ctx)
    heads = {n for n in section.module_metrics if "#head" in n}
    assert heads == {f"bert.encoder.layer.{i}.attention.self#head{h}" for i in range(2) for h in range(2)}
    assert any(f.id == "ablation.heads" for f in section.figures)


def test_a_bare_encoder_gets_the_cosine_change_of_its_embedding(tiny_encoder_dir: Path) -> None:
    from tests.conftest import TEXT_ROWS

    report = auditor.audit(str(tiny_encoder_dir), {"text": [t for t, _ in TEXT_ROWS], "label": None},
                           analyses=["ablation"], batch_size=6)
    section = report.section("ablation")
    assert section.error is None, section.error
    pooler = section.module_metrics["pooler.dense"]
    assert pooler == {"ablation_embedding_change": 0.0, "ablation_embedding_change_low": 0.0,
                      "ablation_embedding_change_high": 0.0}
    assert section.module_metrics["encoder.layer.1"]["ablation_embedding_change"] > 0
    assert "ablation_drop" not in section.module_metrics["encoder.layer.1"]


def test_the_model_is_bit_identical_after_the_analysis_and_after_an_error_in_its_middle() -> None:
    torch.manual_seed(0)
    model = ResidualNet().eval()
    x, y = _onehot_data(48, noise=0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    analysis = ModuleAblation()
    ctx = make_context(model, x, y, batch_size=16, analyses=[analysis])
    assert run_one(analysis, ctx).error is None

    def untouched() -> None:
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        assert all("forward" not in m.__dict__ for m in model.modules())
        assert [n for n, m in model.named_modules() if m._forward_hooks or m._forward_pre_hooks] == []

    untouched()
    calls = [0]

    def explode_later(module: nn.Module, args: object) -> None:
        calls[0] += 1
        if calls[0] > 12:
            raise RuntimeError("the model fails in the middle of the ablation")

    handle = model.head.register_forward_pre_hook(explode_later)
    try:
        section = run_one(analysis, ctx)
    finally:
        handle.remove()
    assert section.error is not None and "middle" in section.error.message
    untouched()


@pytest.mark.slow
@pytest.mark.parametrize(("name", "samples"), [("digits_cnn", 64), ("minilm_sentiment", 8)])
def test_the_cached_prefixes_and_the_naive_loop_agree_on_the_demo_models(name: str, samples: int) -> None:
    from benchmarks.ablation import measure

    result = measure(name, samples, runs=1)
    assert result.passes >= 10
    assert result.worst_metric_error <= 1e-6 and result.disagreements == 0
    assert result.full_forward == 0 and result.estimated_share is not None and result.estimated_share < 0.9


@pytest.mark.parametrize("variant", sorted(RESNET_BLOCKS))
def test_resnet_blocks_with_the_relu_after_the_sum_are_ablated_by_their_branches(variant: str) -> None:
    """In each way published ResNets write a block (the ReLU after the sum, the sum in place or not, the
    shortcut an empty Sequential, a zero-padding lambda or conv1x1 + bn), the block is ablated by its branch.
    layer2.0's branch outputs a constant (its last norm has zero scale and a bias of exact binary
    fractions): replacing it by its mean changes nothing, while replacing the block's output collapses
    every sample onto one prediction."""
    model = build_two_stage_resnet(variant)
    last = "bn3" if variant == "torchvision_bottleneck" else "bn2"
    blocks = ["layer1.0", "layer1.1", "layer2.0", "layer2.1"]
    with torch.no_grad():
        norm = model.get_submodule(f"layer2.0.{last}")
        assert isinstance(norm, nn.BatchNorm2d)
        norm.weight.zero_()
        norm.bias.copy_(torch.tensor([0.5, -0.5, 0.25, -1.0])[torch.arange(norm.num_features) % 4])
    x = torch.randn(160, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    model.standardise_head(x)  # noise images spread over the classes again
    analysis = ModuleAblation(AblationParams(unit_layers="none", prune=False))
    ctx = make_context(model, x, None, batch_size=32, analyses=[analysis])
    section = run_one(analysis, ctx)
    assert section.error is None, section.error
    assert section.details["branches"] == {b: [f"{b}.{last}"] for b in blocks}
    for block in blocks:
        values, branch = section.module_metrics[block], section.module_metrics[f"{block}.{last}"]
        assert values["ablation_branches"] == 1.0
        assert {k: v for k, v in values.items() if k != "ablation_branches"} == branch  # one pass: the branch's
    constant = section.module_metrics["layer2.0"]
    assert constant["ablation_drop"] == 0.0 and constant["ablation_kl"] == pytest.approx(0.0, abs=1e-9)
    redundant = {f.module: f.message for f in section.findings if f.id == "ablation.redundant"}
    assert f"the residual branch of layer2.0 (layer2.0.{last})" in redundant["layer2.0"]
    critical = {f.module for f in section.findings if f.id == "ablation.critical_module"}
    assert not {f"{b}.{last}" for b in critical} & critical  # a block's finding, not a twin for its branch module
    ranked = next(t for t in section.tables if t.id == "ablation.ranked")
    assert {row[1]: row[2] for row in ranked.rows}["layer2.0"] == f"{last} (mean)"
    # What the block's ablation meant before: its whole output replaced, every sample gets one prediction.
    mean = ctx.capture.unit_means["layer2.0"].float().reshape(1, -1, 1, 1)
    whole = LocalExecutor(ctx.subject, ctx.tree, batch_size=32, progress=SilentProgress()).scores(
        [PatchedPass({"layer2.0": Patch(output=mean)})])[0]
    assert float(whole.std(dim=0).max()) <= 1e-5 * float(whole.abs().max())
    assert len(set(whole.argmax(dim=1).tolist())) == 1 and len(set(ctx.clean.predictions.tolist())) >= 3


def test_a_bare_encoders_ablation_that_gives_every_sample_one_embedding_is_a_collapse() -> None:
    from auditor.analyses.ablation.metrics import ONE_EMBEDDING, Reference, score_rows
    from auditor.kit.removal import Target

    g = torch.Generator().manual_seed(0)
    intact = torch.randn(40, 8, generator=g, dtype=torch.float64)
    ref = Reference(scores=intact, labels=None, log_p=None, correct=None, loss=None, predictions=None, classes={},
                    weights=torch.full((10, 40), 1 / 40, dtype=torch.float64), confidence=0.95)
    targets = [Target(name=n, kind="module", patches={}, key=(n,), replaced="mean") for n in ("one", "halved")]
    one = intact.mean(dim=0, keepdim=True).expand(40, 8) + 1e-3 * intact  # every sample (nearly) one point
    rows = score_rows(ref, targets, [one, intact * 0.5], [None, None])
    assert rows[0].collapsed_to == ONE_EMBEDDING  # its spread is 1e-6 of the intact one's
    assert rows[1].collapsed_to is None and rows[1].drop == pytest.approx(0.0, abs=1e-12)  # same directions


class TenDecoys(nn.Module):
    """A carrier the output reads, and ten branches it multiplies by zero: ten redundant modules by construction."""

    def __init__(self) -> None:
        super().__init__()
        self.carrier = _linear([[3, 0, 0], [0, 3, 0], [0, 0, 3]], [0, 0, 0])
        self.decoys = nn.ModuleList(_linear([[1, 0, 0], [0, 1, 0], [0, 0, 1]], [0, 0, 0]) for _ in range(10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.carrier(x) + 0.0 * sum(decoy(x) for decoy in self.decoys)


def test_every_redundant_module_has_its_finding_none_is_dropped_by_a_cap() -> None:
    """Eight was the cap: the ninth and tenth decoys had no finding and no word said so."""
    x, y = _onehot_data(240)
    section = _run(TenDecoys(), x, y, unit_layers="none", modules="leaves")
    redundant = sorted(f.module or "" for f in section.findings if f.id == "ablation.redundant")
    assert redundant == sorted(f"decoys.{i}" for i in range(10))
    assert section.metrics["redundant_modules"] == 10.0


def test_max_findings_is_accepted_from_older_configs_and_warns_that_it_no_longer_caps() -> None:
    with pytest.warns(FutureWarning, match="max_findings is deprecated"):
        AblationParams(max_findings=8)


class CloseEmbeddings(nn.Module):
    """Embeddings all near one direction (two samples' embeddings are ~0.01 apart in cosine distance, as a BERT
    CLS pool's are): `base` writes the shared direction plus the input, `nudge` moves each embedding by a few
    thousandths, and `decoy` is multiplied by zero."""

    def __init__(self) -> None:
        super().__init__()
        self.base = _linear([[0.1, 0, 0], [0, 0.1, 0], [0, 0, 0.1]], [1.0, 1.0, 1.0])
        self.nudge = _linear([[0, 0.06, 0], [0, 0, 0.06], [0.06, 0, 0]], [0, 0, 0])
        self.decoy = _linear([[1, 0, 0], [0, 1, 0], [0, 0, 1]], [0, 0, 0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.nudge(x) + 0.0 * self.decoy(x)


def test_a_bare_encoders_equivalence_margin_is_in_the_scale_of_its_embeddings() -> None:
    """The nudge's cosine change is well under the old absolute ±0.02 but a large share of how far apart two
    samples' embeddings are: it is not redundant. The decoy changes nothing: it is."""
    x, _ = _onehot_data(240)
    report = auditor.audit(CloseEmbeddings(), (x, None), task="embedding", analyses=["ablation"], batch_size=16,
                           config=auditor.AuditConfig.model_validate(
                               {"analyses": {"ablation": {"modules": "leaves", "unit_layers": "none"}}}))
    section = report.section("ablation")
    assert section.error is None, section.error
    nudge = section.module_metrics["nudge"]
    assert 0.0 < nudge["ablation_embedding_change_high"] < 0.02  # the old margin called it redundant
    redundant = {f.module: f for f in section.findings if f.id == "ablation.redundant"}
    assert "nudge" not in redundant and "decoy" in redundant
    assert nudge["ablation_embedding_change_low"] > redundant["decoy"].evidence["margin"]
