"""Several patched passes in one forward: K copies of a batch stacked along the batch dimension, each with its
own patch. Their scores equal the one-at-a-time ones (within float rounding; here exactly), in fewer forwards;
a model that mixes the samples of a batch is not stacked; the model is left as it was."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from auditor.engine.passes import PatchedPass
from auditor.engine.prefix import run_with_cached_prefixes
from auditor.engine.stacking import STACK_ATOL, STACK_RTOL, stacking_check
from auditor.progress import SilentProgress
from auditor.walk.patch import Patch
from tests.contexts import make_context
from tests.models import build_cifar_resnet, build_tiny_cnn


def _identity_net() -> nn.Module:
    """x (2 features) -> hidden = relu(x) -> logits = hidden: removing hidden unit u zeroes logit u, by construction."""
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad():
        for layer in (net[0], net[2]):
            layer.weight.copy_(torch.eye(2))
            layer.bias.zero_()
    return net


def _unit(u: int, fill: float):  # type: ignore[no-untyped-def]
    def replace(out: Tensor) -> Tensor:
        new = out.clone()
        new[:, u] = fill
        return new
    return replace


def _run(ctx, passes, stack):  # type: ignore[no-untyped-def]
    return run_with_cached_prefixes(ctx.subject, ctx.tree, passes, traced=ctx.traced, batch_size=8,
                                    budget_bytes=1 << 30, progress=SilentProgress(), stack=stack)


def test_stacked_unit_ablations_give_the_values_known_by_construction() -> None:
    x = torch.tensor([[1.0, 2.0], [3.0, 0.5], [0.25, 4.0]] * 4)
    ctx = make_context(_identity_net(), x, torch.tensor([1, 0, 1] * 4), batch_size=8)
    passes = [PatchedPass({"1": Patch(output=_unit(u, fill))}, f"unit {u} to {fill}")
              for u in (0, 1) for fill in (0.0, 10.0)]
    run = _run(ctx, passes, stack=4)
    assert run.stacked == 4 and run.forwards == 1  # the four passes shared one forward per batch
    for (u, fill), scores in zip([(u, f) for u in (0, 1) for f in (0.0, 10.0)], run.scores, strict=True):
        expected = x.clone()
        expected[:, u] = fill
        assert torch.equal(scores, expected)


@pytest.mark.parametrize("build, shape", [(build_tiny_cnn, (20, 1, 8, 8)), (build_cifar_resnet, (20, 3, 32, 32))])
def test_stacked_passes_equal_one_at_a_time_in_fewer_forwards(build, shape) -> None:  # type: ignore[no-untyped-def]
    model = build()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64).float()
    ctx = make_context(model, x, torch.arange(20) % 3, batch_size=8)
    leaves = [n for n, m in model.named_modules() if n and next(m.children(), None) is None]
    passes = [PatchedPass({n: Patch(output=lambda o, k=k: o * (0.25 * k))}, n) for n in leaves for k in range(4)]
    one, many = _run(ctx, passes, 1), _run(ctx, passes, 8)
    assert many.forwards < len(passes) / 2 and one.forwards == len(passes)
    for a, b in zip(one.scores, many.scores, strict=True):
        assert (a - b).abs().max() <= STACK_RTOL * a.abs().max() + STACK_ATOL
        assert torch.equal(a.argmax(1), b.argmax(1))


class MixesTheBatch(nn.Module):
    """Subtracts the batch's mean: a sample's score depends on the others, so copies may not share a forward."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)
        self.out = nn.Linear(2, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc(x)
        return self.out(h - h.mean(0, keepdim=True) + h[:1])


def test_a_model_that_mixes_the_batch_is_not_stacked_and_stays_exact() -> None:
    model = MixesTheBatch()
    x = torch.arange(16, dtype=torch.float32).reshape(8, 2) ** 2 / 16
    ctx = make_context(model, x, torch.tensor([1, 0] * 4), batch_size=8)
    assert not stacking_check(ctx.subject, 8)
    passes = [PatchedPass({"fc": Patch(output=_unit(u, 0.0))}, str(u)) for u in (0, 1)]
    one, many = _run(ctx, passes, 1), _run(ctx, passes, 4)
    assert many.stacked == 0 and all(torch.equal(a, b) for a, b in zip(one.scores, many.scores, strict=True))


def test_a_stacked_pass_that_raises_leaves_the_model_as_it_was() -> None:
    model = _identity_net()
    x = torch.tensor([[1.0, 2.0], [3.0, 0.5]] * 4)
    ctx = make_context(model, x, torch.tensor([1, 0] * 4), batch_size=8)

    def fails(out: Tensor) -> Tensor:
        raise RuntimeError("a patch that fails")

    passes = [PatchedPass({"1": Patch(output=_unit(0, 0.0))}, "ok"), PatchedPass({"1": Patch(output=fails)}, "bad")]
    with pytest.raises(RuntimeError, match="a patch that fails"):
        _run(ctx, passes, 2)
    assert all(not m._forward_hooks and "forward" not in m.__dict__ for m in model.modules())
    assert torch.equal(model(x), x)
