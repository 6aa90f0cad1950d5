"""Each kind of need records what it promises, on models built so the answer is known."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from auditor.config import AuditConfig, DataSpec, ModelSpec
from auditor.engine.capture import run_capture
from auditor.walk.needs import Needs
from auditor.progress import SilentProgress
from auditor.subject import load_subject
from auditor.walk import ModuleTree
from tests.contexts import make_context
from tests.models import TinyCNN, TwiceUsed


def _images(n: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, 8, 8, generator=g), torch.arange(n) % 3


def _hooks_left(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if m._forward_hooks or m._forward_pre_hooks or m._backward_hooks]


def test_per_unit_means_and_pooled_features_are_exact() -> None:
    model, (x, y) = TinyCNN().eval(), _images()
    names = frozenset({"conv", "pool", "fc"})
    ctx = make_context(model, x, y, batch_size=6, needs=Needs(unit_means=names, pooled=names))
    with torch.no_grad():
        conv = model.conv(x)  # before the in-place ReLU rewrites it
        pooled = model.pool(torch.relu(conv))
        logits = model(x)
    capture = ctx.capture
    assert torch.allclose(capture.unit_means["conv"], conv.double().mean(dim=(0, 2, 3)), atol=1e-6)
    assert torch.allclose(capture.pooled["conv"], conv.mean(dim=(2, 3)), atol=1e-6)
    assert torch.allclose(capture.pooled["pool"], pooled.mean(dim=(2, 3)), atol=1e-6)
    assert torch.allclose(capture.pooled["fc"], logits, atol=1e-6)
    assert set(capture.pooled) == set(capture.unit_means) == names  # exactly the union asked for, no more
    assert capture.top_k == {} and capture.grad_norm == {} and capture.targets is None


def test_top_k_are_the_true_top_k_with_their_positions() -> None:
    model, (x, y) = TinyCNN().eval(), _images(30)
    ctx = make_context(model, x, y, batch_size=7, needs=Needs(top_k=4, top_k_modules=frozenset({"conv"})))
    with torch.no_grad():
        conv = model.conv(x).flatten(2)  # (samples, units, positions)
    peak, where = conv.max(dim=2)  # per sample and unit
    top = ctx.capture.top_k["conv"]
    values, samples = peak.t().topk(4, dim=1)
    assert torch.allclose(top.values, values) and torch.equal(top.samples, samples)
    assert torch.equal(top.positions, where.t().gather(1, samples))


def _sentences(tmp_path: Path) -> Path:
    path = tmp_path / "texts.csv"
    path.write_text("text,label\ni loved this book,positive\nbad,negative\n"
                    "the food was awful and the service slow,negative\ngreat,positive\n", encoding="utf-8")
    return path


def test_pooled_text_features_ignore_padding(tiny_bert_dir: Path, tmp_path: Path) -> None:
    config = AuditConfig(model=ModelSpec(path=str(tiny_bert_dir)), data=DataSpec(path=str(_sentences(tmp_path))),
                         batch_size=4)
    subject = load_subject(config)
    tree = ModuleTree(subject.model)
    layer = "bert.encoder.layer.0"
    capture = run_capture(subject, tree, Needs(pooled=frozenset({layer}), unit_means=frozenset({layer})),
                          batch_size=4, progress=SilentProgress())
    # each sentence alone (no padding) must give the same pooled vector as in its padded batch
    for i in range(len(subject)):
        inputs = subject.adapter.encode(i, i + 1)
        with torch.no_grad():
            hidden = subject.model(**inputs, output_hidden_states=True).hidden_states[1][0]
        assert torch.allclose(capture.pooled[layer][i], hidden.mean(dim=0), atol=1e-5)
    batch = subject.adapter.encode(0, 4)
    assert int((batch["attention_mask"] == 0).sum()) > 0  # the batch really was padded
    with torch.no_grad():
        hidden = subject.model(**batch, output_hidden_states=True).hidden_states[1]
    mask = batch["attention_mask"].bool()
    assert torch.allclose(capture.unit_means[layer], hidden[mask].double().mean(dim=0), atol=1e-5)


def test_gradients_match_autograd_with_an_in_place_relu_and_leave_no_trace() -> None:
    model, (x, y) = TinyCNN().eval(), _images()
    model.fc.weight.requires_grad_(False)  # a frozen layer: its flag must come back as it was
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    names = frozenset(n for n, _ in model.named_modules())
    ctx = make_context(model, x, y, batch_size=6, needs=Needs(gradients=names, unit_relevance=names))
    capture = ctx.capture
    assert all(p.grad is None for p in model.parameters())  # activation gradients only
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert _hooks_left(model) == [] and capture.backwards == 4 and capture.in_place == {"conv"}
    # by hand: the same network written out, each intermediate kept
    conv = model.conv(x).detach().requires_grad_()
    relu = torch.relu(conv)
    relu.retain_grad()
    pooled = model.pool(relu)
    pooled.retain_grad()
    logits = model.fc(pooled.flatten(1))
    logits.retain_grad()
    target = torch.log_softmax(logits, dim=1)[torch.arange(len(y)), y]
    target.sum().backward()
    assert torch.allclose(capture.targets, target.detach(), atol=1e-6)
    for name, value in (("conv", conv), ("relu", relu), ("pool", pooled), ("fc", logits)):
        grad = value.grad
        assert torch.allclose(capture.grad_norm[name], grad.flatten(1).norm(dim=1), atol=1e-6), name
        assert torch.allclose(capture.grad_x_act[name], (grad * value).flatten(1).sum(1), atol=1e-6), name
    assert torch.allclose(capture.unit_relevance["conv"], (conv.grad * conv).sum(dim=(2, 3)), atol=1e-6)
    # the model itself and its last module return the same logits: one tensor, the same numbers
    assert torch.equal(capture.grad_x_act[""], capture.grad_x_act["fc"])


def test_a_module_called_twice_gets_the_sum_over_its_calls() -> None:
    model = TwiceUsed().eval()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(12, 4, generator=g), torch.arange(12) % 3
    ctx = make_context(model, x, y, batch_size=5, needs=Needs(gradients=frozenset({"shared"})))
    first = model.shared(x)  # by hand: each call's output keeps its own gradient
    first.retain_grad()
    second = model.shared(torch.relu(first))
    second.retain_grad()
    target = torch.log_softmax(model.head(second), dim=1)[torch.arange(12), y]
    target.sum().backward()
    expected = (first.grad * first).sum(1) + (second.grad * second).sum(1)
    assert torch.allclose(ctx.capture.grad_x_act["shared"], expected.detach(), atol=1e-6)
    norms = first.grad.norm(dim=1) + second.grad.norm(dim=1)
    assert torch.allclose(ctx.capture.grad_norm["shared"], norms, atol=1e-6)


class SecondCallRewritten(nn.Module):
    """One Linear used twice per forward; only its second call's output is then rewritten by an in-place ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.shared, self.head = nn.Linear(4, 5), nn.Linear(5, 5), nn.Linear(5, 3)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.shared(self.a(x)) * 1.0
        return self.head(self.relu(self.shared(h)))


def test_each_call_of_a_reused_module_gets_its_own_gradient_even_when_only_a_later_call_is_rewritten() -> None:
    model = SecondCallRewritten().eval()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(12, 4, generator=g), torch.arange(12) % 3
    ctx = make_context(model, x, y, batch_size=5, needs=Needs(gradients=frozenset({"shared"})))
    assert ctx.capture.backward_error is None and "shared" in ctx.capture.in_place
    first = model.shared(model.a(x))
    first.retain_grad()
    second = model.shared(first * 1.0)
    second.retain_grad()
    target = torch.log_softmax(model.head(torch.relu(second)), dim=1)[torch.arange(12), y]
    target.sum().backward()
    for key, value in (("shared@1", first), ("shared@2", second)):  # the value before the in-place ReLU
        assert torch.allclose(ctx.capture.grad_x_act[key], (value.grad * value).sum(1).detach(), atol=1e-6), key


class IgnoresABranch(nn.Module):
    """Both branches run on the input; the head reads only `used` (`ignored` is multiplied by zero)."""

    def __init__(self) -> None:
        super().__init__()
        self.used, self.ignored, self.head = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.used(x) + 0.0 * self.ignored(x))


class NeverRead(nn.Module):
    """`side` runs, but its output is thrown away: it takes no part in the target's graph."""

    def __init__(self) -> None:
        super().__init__()
        self.side, self.head = nn.Linear(4, 4), nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.side(x)
        return self.head(x)


def test_a_branch_the_head_ignores_gets_exactly_zero_gradient() -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 4, generator=g), torch.arange(16) % 3
    names = frozenset({"used", "ignored", "head"})
    capture = make_context(IgnoresABranch(), x, y, needs=Needs(gradients=names)).capture
    assert torch.count_nonzero(capture.grad_norm["ignored"]) == 0
    assert bool((capture.grad_norm["used"] > 0).all()) and bool((capture.grad_norm["head"] > 0).all())
    never = make_context(NeverRead(), x, y, needs=Needs(gradients=frozenset({"side", "head"}))).capture
    assert torch.count_nonzero(never.grad_norm["side"]) == 0 and "side" not in never.no_gradient


def test_a_bare_encoder_has_no_gradients_and_says_why(tiny_encoder_dir: Path, text_csv: Path) -> None:
    config = AuditConfig(model=ModelSpec(path=str(tiny_encoder_dir)), data=DataSpec(path=str(text_csv)), batch_size=4)
    subject = load_subject(config)
    capture = run_capture(subject, ModuleTree(subject.model), Needs(gradients=frozenset({"encoder.layer.0"})),
                          batch_size=4, progress=SilentProgress())
    assert capture.backwards == 0 and capture.grad_norm == {}
    with pytest.raises(RuntimeError, match="no decision"):
        capture.gradients()


def test_stats_only_capture_runs_without_autograd() -> None:
    model, (x, y) = TinyCNN().eval(), _images()
    seen = []
    model.fc.register_forward_hook(lambda m, a, out: seen.append(out.requires_grad))
    ctx = make_context(model, x, y, batch_size=10)
    assert ctx.capture.backwards == 0 and seen and not any(seen)


class SharedPositions(nn.Module):
    """Adds a learned (1, tokens, features) table, broadcast over the batch, as BERT adds position embeddings."""

    def __init__(self) -> None:
        super().__init__()
        self.positions = nn.Embedding(5, 4)
        self.head = nn.Linear(20, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        table = self.positions(torch.arange(5).unsqueeze(0))  # (1, 5, 4)
        return self.head((x.view(-1, 5, 4) + table).flatten(1))


def test_an_output_shared_by_the_batch_has_no_per_sample_gradient_not_a_zero_one() -> None:
    g = torch.Generator().manual_seed(0)
    capture = make_context(SharedPositions(), torch.randn(12, 20, generator=g), torch.arange(12) % 3,
                           needs=Needs(gradients=frozenset({"positions", "head"}))).capture
    assert capture.not_per_sample == {"positions"} and "positions" not in capture.grad_norm
    assert bool((capture.grad_norm["head"] > 0).all())
