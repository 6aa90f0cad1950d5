"""`patch` replaces a module's output or weights inside a `with` block and restores the model exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from auditor.walk.patch import Patch, patch, patch_many
from tests.models import TinyCNN, TwiceUsed, build_shared_across_widths


def _hooks_left(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if m._forward_hooks or m._forward_pre_hooks]


def _x(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


def test_zeroing_a_conv_before_an_in_place_relu_and_restoring_it_exactly() -> None:
    model, x = TinyCNN().eval(), _x(6, 1, 8, 8)
    before = model(x)
    with patch(model.conv, output="zeros"):
        patched = model(x)
        again = model(x)
    # conv -> 0, in-place ReLU(0) = 0, pool = 0: the logits are the head's bias for every sample
    assert torch.allclose(patched, model.fc.bias.expand(6, 3))
    assert torch.equal(patched, again)
    assert torch.equal(model(x), before) and _hooks_left(model) == []


def test_a_constant_output_survives_the_in_place_relu_that_follows_it() -> None:
    model, x = TinyCNN().eval(), _x(4, 1, 8, 8)
    means = torch.tensor([-1.0, 0.5, -2.0, 3.0]).view(1, 4, 1, 1)
    with patch(model.conv, output=means):
        first = model(x)
        second = model(x)
    assert torch.equal(means.flatten(), torch.tensor([-1.0, 0.5, -2.0, 3.0]))  # ReLU(inplace) did not rewrite it
    assert torch.equal(first, second)


def test_a_module_called_twice_is_patched_at_both_calls() -> None:
    model, x = TwiceUsed().eval(), _x(5, 4)
    with patch(model.shared, output=lambda out: 2 * out):
        patched = model(x)
    by_hand = model.head(2 * model.shared(torch.relu(2 * model.shared(x))))
    assert torch.allclose(patched, by_hand)


def test_weights_come_back_bit_identical_also_when_the_forward_raises() -> None:
    model, x = TinyCNN().eval(), _x(3, 1, 8, 8)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    before = model(x)
    with pytest.raises(RuntimeError, match="boom"):
        with patch(model.conv, weights={"weight": torch.randn_like, "bias": torch.zeros(4)}):
            assert not torch.equal(model(x), before)
            raise RuntimeError("boom")
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert torch.equal(model(x), before) and _hooks_left(model) == []


def test_an_output_hook_is_removed_when_the_forward_raises() -> None:
    model = TinyCNN().eval()
    with pytest.raises(RuntimeError):
        with patch(model.fc, output="zeros"):
            model(torch.zeros(2, 1, 5, 5))  # wrong size: the forward raises inside the block
    assert _hooks_left(model) == []


def test_patch_many_by_name_and_bad_patches_are_refused() -> None:
    model, x = TinyCNN().eval(), _x(2, 1, 8, 8)
    before = model(x)
    with patch_many(model, {"conv": Patch(output="zeros"), "fc": Patch(weights={"bias": torch.ones(3)})}):
        assert torch.allclose(model(x), torch.ones(2, 3))
    assert torch.equal(model(x), before)
    with pytest.raises(KeyError, match="no parameter or buffer 'nope'"):
        with patch(model.fc, weights={"nope": torch.zeros(1)}):
            pass
    with pytest.raises(ValueError, match="shape"):
        with patch(model.fc, weights={"bias": torch.zeros(5)}):
            pass
    assert torch.equal(model(x), before) and _hooks_left(model) == []


def test_a_recorder_hooked_before_the_patch_sees_the_patched_output() -> None:
    model, seen = TinyCNN().eval(), []
    handle = model.conv.register_forward_hook(lambda m, a, out: seen.append(out.abs().sum().item()))
    try:
        with patch(model.conv, output="zeros"):
            model(_x(2, 1, 8, 8))
    finally:
        handle.remove()
    assert seen == [0.0]


def test_a_per_call_patch_replaces_only_that_call_in_every_forward() -> None:
    model = build_shared_across_widths()
    x = _x(6, 4)
    with torch.no_grad():
        intact = model(x)
        second_zero = model.head(torch.zeros(6, 5))
        first_zero = model.head(torch.relu(model.lin2(torch.zeros(6, 3))))
        with patch(model.act, calls=(None, "zeros"), root=model):
            assert torch.allclose(model(x), second_zero)
            assert torch.allclose(model(x), second_zero)  # the count starts again with each forward
        with patch_many(model, {"act": Patch(calls=("zeros",))}):  # calls past the tuple's end are left alone
            assert torch.allclose(model(x), first_zero)
        assert torch.equal(model(x), intact)
    assert _hooks_left(model) == []
    with pytest.raises(ValueError, match="root"):
        with patch(model.act, calls=("zeros", None)):
            pass
