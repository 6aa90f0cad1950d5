"""The randomization cascade as independent steps: step k computed alone has the cumulative walk's weights, leaves
the model (and the global random state) as it was, and a step that leaves the function unchanged takes the
previous step's maps."""

from __future__ import annotations

import torch
from torch import nn

from auditor.analyses.trust.explainers import ExplainSpec, gradient
from auditor.analyses.trust.randomize import cascade, cascade_groups, randomized_copy
from auditor.analyses.trust.steps import TRAINED, CascadeStep, explain_step, resolve
from auditor.engine.executor import LocalExecutor
from auditor.kit.captum import Baseline
from auditor.progress import SilentProgress
from auditor.walk.blocks import find_blocks
from auditor.walk.tree import ModuleTree
from tests.contexts import make_context


class Scaled(nn.Module):
    """A parameter without `reset_parameters` (redrawn from its own mean and spread) beside a BatchNorm's."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class Net(nn.Module):
    def __init__(self, unused: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.norm = nn.BatchNorm2d(6)
        self.scaled = Scaled()
        self.head = nn.Linear(6 * 4 * 4, 3)
        self.unused = nn.Linear(3, 3) if unused else None
        with torch.no_grad():  # as if trained: re-initializing the BatchNorm changes its output
            self.norm.weight.uniform_(0.5, 1.5)
            self.norm.running_mean.uniform_(-0.5, 0.5)
            self.norm.running_var.uniform_(0.5, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.conv(x)).relu()
        h = self.scaled(h.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.head(h.flatten(1))


def _groups(model: nn.Module, x: torch.Tensor) -> list:
    order: dict[str, int | None] = {}

    def seen(name: str):  # noqa: ANN202
        def hook(*_: object) -> None:
            order.setdefault(name, len(order))
        return hook

    handles = [m.register_forward_hook(seen(n)) for n, m in model.named_modules()]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return cascade_groups(model, find_blocks(ModuleTree(model)), order)


def _states(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_step_k_alone_has_the_weights_of_the_cumulative_walk_and_the_model_is_untouched() -> None:
    torch.manual_seed(0)
    model = Net().eval()
    x = torch.randn(4, 1, 4, 4)
    groups = _groups(model, x)
    assert len(groups) >= 3
    before = _states(model)
    walked = [_states(clone) for _, clone in cascade(model, groups, seed=7)]
    rng = torch.random.get_rng_state()
    for k in reversed(range(len(groups))):  # any order: each step is computed from the model alone
        alone = randomized_copy(model, groups, k, seed=7).state_dict()
        assert alone.keys() == walked[k].keys()
        assert all(torch.equal(alone[name], walked[k][name]) for name in alone), k
    assert torch.equal(torch.random.get_rng_state(), rng)  # private generator states only
    # step k changed its own group, and nothing outside groups 0..k
    for k, group in enumerate(groups):
        changed = {n for n in before if not torch.equal(before[n], walked[k][n])}
        assert any(n.startswith(group.name + ".") for n in changed), k
        assert all(any(n.startswith(g.name + ".") for g in groups[:k + 1]) for n in changed), k
    assert all(torch.equal(v, model.state_dict()[n]) for n, v in before.items())


def test_cascade_steps_on_the_local_executor_give_the_walks_maps_and_skip_an_unchanged_function() -> None:
    torch.manual_seed(1)
    model = Net(unused=True).eval()
    x = torch.randn(6, 1, 4, 4)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    ctx = make_context(model, x, y, batch_size=6)
    subject = ctx.subject
    groups = _groups(subject.model, x)
    assert groups[-1].name == "unused"  # never reached by the forward: the last step, and it changes nothing
    spec = ExplainSpec(keys=tuple(subject.adapter.encode(0, 1)), key=next(iter(subject.adapter.encode(0, 1))),
                       baseline=Baseline("zeros"), embeddings=None, n_steps=4, internal_batch_size=64)
    inputs = subject.encode_samples(range(6))
    items = [CascadeStep(k, tuple(groups), 3, spec, {"gradient": gradient}, inputs, y)
             for k in range(TRAINED, len(groups))]
    before = _states(subject.model)
    executor = LocalExecutor(subject, ModuleTree(subject.model), batch_size=6, progress=SilentProgress())
    results = executor.map(explain_step, items, description="randomization cascade")
    assert results[-1] is None and all(r is not None for r in results[:-1])
    maps = resolve(results)
    assert maps[-1] is maps[-2]
    assert all(torch.equal(v, subject.model.state_dict()[n]) for n, v in before.items())
    # what the cumulative walk explains at each step
    setup = spec.bind(subject)
    for k, (_, clone) in enumerate(cascade(subject.model, groups, seed=3)):
        expected = gradient(setup, clone, inputs, y)
        assert torch.equal(maps[k + 1]["gradient"], expected), k
    assert torch.equal(maps[0]["gradient"], gradient(setup, subject.model, inputs, y))
