"""Cached prefixes give exactly what the naive loop gives (a full forward per patched pass), and leave the model
as it was, also when a pass raises."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from auditor.engine.executor import LocalExecutor
from auditor.engine.passes import PatchedPass
from auditor.engine.prefix import run_with_cached_prefixes
from auditor.progress import SilentProgress
from auditor.walk.patch import Patch
from tests.contexts import make_context
from tests.models import TwiceUsed, build_cifar_resnet, build_shared_across_widths, build_tiny_cnn


def _leaf_passes(model: nn.Module, replacement: str = "zeros") -> list[PatchedPass]:
    return [PatchedPass({n: Patch(output=replacement)}, n) for n, m in model.named_modules()
            if n and next(m.children(), None) is None]


def _both(model: nn.Module, x: torch.Tensor, y: torch.Tensor, passes: list[PatchedPass], *, budget: int = 1 << 30,
          tokenizer: object = None):
    ctx = make_context(model, x, y, batch_size=8, tokenizer=tokenizer)
    run = run_with_cached_prefixes(ctx.subject, ctx.tree, passes, traced=ctx.traced, batch_size=8,
                                   budget_bytes=budget, progress=SilentProgress())
    naive = LocalExecutor(ctx.subject, ctx.tree, batch_size=8, progress=SilentProgress()).scores(passes)
    return run, naive, ctx


def _assert_equal(run, naive) -> None:
    for planned, fast, slow in zip(run.routes, run.scores, naive, strict=True):
        assert torch.equal(fast, slow), planned


@pytest.mark.parametrize("budget", [1 << 30, 0, 2000])
def test_every_leaf_of_a_cnn_with_in_place_relus_gives_the_naive_scores(budget: int) -> None:
    model = build_tiny_cnn()
    g = torch.Generator().manual_seed(0)
    run, naive, _ = _both(model, torch.rand(20, 1, 8, 8, generator=g), torch.arange(20) % 3, _leaf_passes(model),
                          budget=budget)
    _assert_equal(run, naive)
    if budget == 0:
        assert run.cached == {}
    assert "forward" not in model.__dict__ and all("forward" not in m.__dict__ for m in model.modules())


def test_a_resnet_whose_blocks_add_in_place_gives_the_naive_scores_and_skips_what_precedes() -> None:
    model = build_cifar_resnet().eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 3, 16, 16, generator=g)
    passes = _leaf_passes(model) + [PatchedPass({"layer2.0.bn2": Patch(output=lambda t: t * 0.5)}, "half")]
    run, naive, _ = _both(model, x, torch.arange(12) % 10, passes)
    _assert_equal(run, naive)
    route = run.routes[[p.label for p in passes].index("layer3.0.conv1")]
    assert route.full_forward is None and {"conv1", "bn1", "layer1", "layer2"} <= set(route.replaced)
    first = run.routes[0]
    assert first.first == "conv1" and not first.replaced


def test_a_module_used_twice_falls_back_to_a_full_forward_and_says_why() -> None:
    model = TwiceUsed()
    g = torch.Generator().manual_seed(0)
    passes = [PatchedPass({"head": Patch(output="zeros")}, "head"), PatchedPass({"shared": Patch(output="zeros")})]
    run, naive, _ = _both(model, torch.randn(16, 4, generator=g), torch.arange(16) % 3, passes)
    _assert_equal(run, naive)
    assert run.routes[0].replaced == () and run.routes[0].patched_directly
    assert run.routes[1].full_forward is not None and not run.routes[1].patched_directly


def test_the_tiny_bert_gives_the_naive_scores_for_modules_and_functions_of_their_output(tiny_bert_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tests.conftest import TEXT_ROWS

    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_bert_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    data = {"text": [t for t, _ in TEXT_ROWS], "label": [y for _, y in TEXT_ROWS]}
    names = ["bert.embeddings", "bert.encoder.layer.0.attention.self.query", "bert.encoder.layer.1.output.dense",
             "bert.encoder.layer.1.attention.self", "bert.pooler", "classifier"]
    passes = [PatchedPass({n: Patch(output="zeros")}, n) for n in names]
    passes.append(PatchedPass({"bert.encoder.layer.1.attention.self": Patch(output=lambda t: t.flip(-1))}, "flip"))
    passes.append(PatchedPass({"bert.encoder.layer.0.output.dense": Patch(output="zeros"),
                               "bert.encoder.layer.1.output.dense": Patch(output="zeros")}, "two"))
    ctx = make_context(model, data, None, batch_size=8, tokenizer=tokenizer)
    run = run_with_cached_prefixes(ctx.subject, ctx.tree, passes, traced=ctx.traced, batch_size=8,
                                   budget_bytes=1 << 30, progress=SilentProgress())
    naive = LocalExecutor(ctx.subject, ctx.tree, batch_size=8, progress=SilentProgress()).scores(passes)
    _assert_equal(run, naive)
    by_label = dict(zip([p.label for p in passes], run.routes, strict=True))
    assert "bert.encoder.layer.0" in by_label["bert.encoder.layer.1.output.dense"].replaced
    assert "bert.encoder.layer.1.attention" in by_label["bert.encoder.layer.1.output.dense"].replaced
    assert by_label["flip"].patched_directly  # its own output was recorded: the patch ran on it
    assert run.clean_scores is not None and torch.equal(run.clean_scores, ctx.capture.scores)


class FailsLater(nn.Module):
    """Passes its input through until `fail_after` calls, then raises."""

    def __init__(self, fail_after: int) -> None:
        super().__init__()
        self.calls, self.fail_after = 0, fail_after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls > self.fail_after:
            raise RuntimeError("fails in the middle of the passes")
        return x * 1.0


def test_a_pass_that_raises_leaves_every_forward_and_hook_as_it_was() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), FailsLater(10**9), nn.Linear(8, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ctx = make_context(model, torch.randn(16, 4), torch.arange(16) % 3, batch_size=8)
    model[3].calls, model[3].fail_after = 0, 5
    passes = [PatchedPass({n: Patch(output="zeros")}, n) for n in ("0", "2", "4")]
    with pytest.raises(RuntimeError, match="middle"):
        run_with_cached_prefixes(ctx.subject, ctx.tree, passes, traced=ctx.traced, batch_size=8,
                                 budget_bytes=1 << 30, progress=SilentProgress())
    assert all("forward" not in m.__dict__ for m in model.modules())
    assert [n for n, m in model.named_modules() if m._forward_hooks or m._forward_pre_hooks] == []
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_patches_of_single_calls_of_a_module_reused_at_two_widths_give_the_naive_scores() -> None:
    model = build_shared_across_widths()
    g = torch.Generator().manual_seed(0)
    second = torch.full((1, 5), 0.25)
    passes = [PatchedPass({"act": Patch(calls=("zeros", None))}, "act@1"),
              PatchedPass({"act": Patch(calls=(None, second))}, "act@2"),
              PatchedPass({"act": Patch(calls=(torch.full((1, 3), 0.5), second))}, "act"),
              PatchedPass({"lin2": Patch(output="zeros"), "act": Patch(calls=(None, lambda t: t * 2))}, "both")]
    run, naive, _ = _both(model, torch.rand(20, 4, generator=g), torch.arange(20) % 2, passes)
    _assert_equal(run, naive)
    assert not torch.equal(naive[0], naive[1])  # call 1 and call 2 are different ablations
    assert "forward" not in model.__dict__ and all("forward" not in m.__dict__ for m in model.modules())
