"""The walk: one hooked pass records every module's output statistics, and no hook outlives it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from auditor.walk import ModuleTree, Recorder
from auditor.walk.rows import module_rows
from tests.models import SharedAcrossWidths, build_shared_across_widths, build_twice_used


def _hooks_left(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if m._forward_hooks or m._forward_pre_hooks or m._backward_hooks]


def _record(model: nn.Module, *batches: torch.Tensor) -> Recorder:
    tree = ModuleTree(model)
    with torch.no_grad(), Recorder(tree) as recorder:
        for x in batches:
            recorder.begin_forward()
            model(x)
    return recorder


class InplaceCNN(nn.Module):
    """conv -> in-place ReLU -> pool -> linear; the ReLU rewrites the conv's output tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.relu(self.conv(x))).flatten(1))


class Twice(nn.Module):
    """One Linear applied twice per forward."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.shared(torch.tanh(self.shared(x))))


class DictOut(nn.Module):
    """Returns a dict, like a Hugging Face ModelOutput."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.lin(x), "hidden": x * 2}


class Explodes(nn.Module):
    """Raises on every forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


def test_statistics_match_numpy_over_all_batches() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5))
    batches = [torch.randn(7, 6), torch.randn(3, 6)]
    recorder = _record(model, *batches)
    with torch.no_grad():
        expected = torch.cat([model(b) for b in batches]).numpy().astype(np.float64)
    stats = recorder.records["0"].stats
    assert stats.mean == pytest.approx(expected.mean(), abs=1e-5)
    assert stats.std == pytest.approx(expected.std(), rel=1e-4)
    assert stats.min == pytest.approx(expected.min(), abs=1e-6)
    assert stats.max == pytest.approx(expected.max(), abs=1e-6)
    assert recorder.records["0"].shape == [None, 5]  # the batch size varied between calls
    assert recorder.records["0"].calls == 2 and recorder.forwards == 2


def test_inplace_relu_does_not_rewrite_the_conv_statistics() -> None:
    torch.manual_seed(0)
    model = InplaceCNN()
    recorder = _record(model, torch.randn(8, 1, 8, 8))
    conv, relu = recorder.records["conv"].stats, recorder.records["relu"].stats
    assert conv.min < 0, "the conv output was summarized after the in-place ReLU clipped it"
    assert relu.min == 0.0 and relu.zero_fraction > 0.2
    assert conv.zero_fraction == pytest.approx(0.0, abs=1e-3)


def test_dead_channels_are_counted_per_channel() -> None:
    model = InplaceCNN()
    with torch.no_grad():
        model.conv.bias[:2] = -100.0  # channels 0 and 1 can never pass the ReLU
    recorder = _record(model, torch.rand(16, 1, 8, 8), torch.rand(5, 1, 8, 8))
    assert recorder.records["relu"].stats.units == 4
    assert recorder.records["relu"].stats.dead_units == 2
    assert recorder.records["conv"].stats.dead_units == 0


def test_an_activation_knows_which_module_fed_it() -> None:
    class FunctionalThenRelu(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.act = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.act(self.lin(x)) * 2.0)  # second call: the input is a functional op's result

    recorder = _record(InplaceCNN(), torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8))
    assert recorder.records["relu"].input_sources == {"conv"}  # in place: its input is the conv's output
    assert recorder.records["conv"].input_sources == set()  # only activations are traced
    assert _record(FunctionalThenRelu(), torch.randn(2, 4)).records["act"].input_sources == {"lin", None}


def test_a_module_used_twice_is_counted_twice_per_forward() -> None:
    model = Twice()
    recorder = _record(model, torch.randn(4, 4), torch.randn(4, 4))
    rows = {r.name: r for r in module_rows(ModuleTree(model), recorder.records, recorder.forwards)}
    assert rows["shared"].calls_per_forward == 2.0
    assert rows["out"].calls_per_forward == 1.0


def test_dict_outputs_and_parameterless_modules_are_recorded() -> None:
    model = nn.Sequential(DictOut())
    tree = ModuleTree(model)
    with torch.no_grad(), Recorder(tree) as recorder:
        recorder.begin_forward()
        model(torch.randn(3, 4))
    root = recorder.records["0"]
    assert root.n_outputs == 2 and root.shape == [3, 2]
    flatten = nn.Sequential(nn.Flatten(), nn.Identity())
    rec = _record(flatten, torch.randn(2, 3, 4))
    assert rec.records["1"].shape == [2, 12] and tree.nodes["0.lin"].params == 10


def test_nan_and_inf_are_counted_and_other_stats_stay_finite() -> None:
    model = nn.Sequential(nn.Identity())
    x = torch.tensor([[1.0, float("nan"), 3.0], [float("inf"), 0.0, -1.0]])
    stats = _record(model, x).records["0"].stats
    assert (stats.nan, stats.inf) == (1, 1)
    assert stats.mean == pytest.approx(0.75) and math.isfinite(stats.std)  # over 1, 3, 0, -1
    assert (stats.min, stats.max) == (-1.0, 3.0)
    assert stats.zero_fraction == pytest.approx(1 / 6)


def test_hooks_are_removed_when_the_model_raises() -> None:
    model = nn.Sequential(nn.Linear(4, 4), Explodes())
    with pytest.raises(RuntimeError, match="boom"):
        _record(model, torch.randn(2, 4))
    assert _hooks_left(model) == []


def test_time_shares_are_fractions_of_the_whole_forward() -> None:
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 64))
    recorder = _record(model, *(torch.randn(64, 64) for _ in range(3)))
    rows = module_rows(ModuleTree(model), recorder.records, recorder.forwards)
    shares = [r.time_share for r in rows]
    assert shares[0] == pytest.approx(1.0)
    assert all(s is not None and 0.0 <= s <= 1.0 for s in shares)
    assert sum(s for s in shares[1:] if s is not None) <= 1.0 + 1e-6


def test_shared_module_registered_twice_is_named_as_alias() -> None:
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    tree = ModuleTree(model)
    assert len(tree) == len(list(model.named_modules()))
    assert tree.nodes["0"].aliases == ("2",)
    assert _record(model, torch.randn(2, 3)).records["0"].calls == 2


def _shared_inputs(n: int = 10) -> torch.Tensor:
    return torch.rand(n, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1


def _by_hand(model: SharedAcrossWidths, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        first = torch.relu(model.lin1(x))
        return first, torch.relu(model.lin2(first))


def test_a_module_reused_at_two_widths_is_recorded_per_call_and_over_all_calls() -> None:
    model = build_shared_across_widths()
    x = _shared_inputs()
    recorder = _record(model, x[:7], x[7:])  # two batches of different sizes
    first, second = _by_hand(model, x)
    act = recorder.records["act"]
    assert [c.count for c in act.per_call] == [2, 2] and act.calls == 4
    one, two = act.of_call(1), act.of_call(2)
    assert (one.stats.units, two.stats.units) == (3, 5)
    assert one.shape == [None, 3] and two.shape == [None, 5]
    assert one.stats.mean == pytest.approx(float(first.double().mean()), rel=1e-6)
    assert two.stats.mean == pytest.approx(float(second.double().mean()), rel=1e-6)
    both = torch.cat([first.flatten(), second.flatten()]).double()
    assert act.stats.mean == pytest.approx(float(both.mean()), rel=1e-6)
    assert act.stats.std == pytest.approx(float(both.std(unbiased=False)), rel=1e-5)
    assert act.stats.units is None or act.stats.units_vary  # no unit count across calls of different widths
    assert act.stats.dead_units is None
    order = {name: recorder.records[name].order for name in ("lin1", "lin2", "head")}
    assert order["lin1"] < one.order < order["lin2"] < two.order < order["head"]  # type: ignore[operator]


def test_the_module_table_has_a_row_per_call_with_its_own_units_and_dead_units() -> None:
    model = build_shared_across_widths()
    recorder = _record(model, _shared_inputs())
    rows = {r.name: r for r in module_rows(ModuleTree(model), recorder.records, recorder.forwards)}
    act = rows["act"]
    assert [(c.name, c.call, c.of_calls, c.units, c.dead_units) for c in act.per_call] == \
        [("act@1", 1, 2, 3, 0), ("act@2", 2, 2, 5, 2)]
    assert act.units is None and act.dead_units is None and act.calls_per_forward == 2.0
    assert [c.calls_per_forward for c in act.per_call] == [1.0, 1.0]
    assert all(not r.per_call for name, r in rows.items() if name != "act")


def test_the_capture_keeps_each_calls_means_pooled_rows_top_k_and_gradients() -> None:
    from auditor.walk.needs import Needs
    from tests.contexts import make_context

    model = build_shared_across_widths()
    x, y = _shared_inputs(), torch.arange(10) % 2
    names = frozenset({"act"})
    needs = Needs(unit_means=names, pooled=names, top_k=2, top_k_modules=names, gradients=names, unit_relevance=names)
    capture = make_context(model, x, y, batch_size=8, needs=needs).capture
    first, second = _by_hand(model, x)
    assert capture.calls == {"act": 2} and capture.call_keys("act") == ["act@1", "act@2"]
    assert torch.allclose(capture.unit_means["act@1"], first.double().mean(dim=0))
    assert torch.allclose(capture.unit_means["act@2"], second.double().mean(dim=0))
    assert torch.allclose(capture.pooled["act@1"], first) and torch.allclose(capture.pooled["act@2"], second)
    assert torch.allclose(capture.top_k["act@2"].values[:, 0], second.max(dim=0).values)
    # the calls differ in width: no per-unit numbers for the module as a whole
    assert not {"act"} & (set(capture.unit_means) | set(capture.pooled) | set(capture.top_k) | set(capture.unit_relevance))

    h1 = torch.relu(model.lin1(x))
    h2 = torch.relu(model.lin2(h1))
    target = torch.log_softmax(model.head(h2), dim=1).gather(1, y.unsqueeze(1)).sum()
    g1, g2 = torch.autograd.grad(target, [h1, h2])
    expected = [(g1 * h1).sum(dim=1).detach(), (g2 * h2).sum(dim=1).detach()]
    for key, gxa in zip(["act@1", "act@2"], expected, strict=True):
        assert torch.allclose(capture.grad_x_act[key], gxa, atol=1e-6)
    assert torch.allclose(capture.grad_x_act["act"], expected[0] + expected[1], atol=1e-6)  # summed over calls
    assert capture.unit_relevance["act@1"].shape == (10, 3) and capture.unit_relevance["act@2"].shape == (10, 5)
    assert capture.records["act@2"].shape == [None, 5]


def test_a_module_reused_at_one_width_keeps_its_whole_numbers_and_gains_per_call_ones() -> None:
    from auditor.walk.needs import Needs
    from tests.contexts import make_context

    model = build_twice_used()
    x = torch.randn(12, 4, generator=torch.Generator().manual_seed(1))
    names = frozenset({"shared"})
    capture = make_context(model, x, torch.arange(12) % 3, batch_size=8,
                           needs=Needs(unit_means=names, pooled=names, top_k=3, top_k_modules=names)).capture
    with torch.no_grad():
        first = model.shared(x)
        second = model.shared(torch.relu(first))
    assert torch.allclose(capture.unit_means["shared"], torch.cat([first, second]).double().mean(dim=0))
    assert torch.allclose(capture.pooled["shared"], (first + second) / 2)
    assert torch.allclose(capture.top_k["shared"].values[:, 0], torch.maximum(first, second).max(dim=0).values)
    assert torch.allclose(capture.pooled["shared@1"], first) and torch.allclose(capture.pooled["shared@2"], second)
    assert torch.allclose(capture.top_k["shared@2"].values[:, 0], second.max(dim=0).values)
