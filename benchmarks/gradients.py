"""The gradients analysis against the naive way, in one run, as ratios (and its numbers against Captum's).

1. Gradient pass: the shared capture with every module's gradient (one hooked forward and one backward
   per batch, activation gradients only) against a plain forward. Bar: <= 2.5 on MiniLM and on the
   ResNet-18-shaped net.
2. Naive per-module loop: Captum's `LayerGradientXActivation` run once per module, on the same samples.
   The same numbers (relative 1e-4 plus an absolute tolerance scaled by the largest |grad x act|), and
   the time ratio. Bar: >= 30x on MiniLM.
3. Conductance: one sweep over every residual branch and sum against Captum's `LayerConductance` run
   once per point, on MiniLM. The same numbers, and the time ratio.

    python -m benchmarks.gradients [--runs 3] [--samples 64] [--conductance-samples 16]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from captum.attr import LayerConductance, LayerGradientXActivation

from auditor.demo import demo_config
from auditor.engine.capture import run_capture
from auditor.analyses.gradients.conductance import SweepSpec, run_sweep
from auditor.walk.needs import Needs
from auditor.progress import SilentProgress
from auditor.subject import Subject, load_subject
from auditor.walk.blocks import find_blocks
from auditor.walk.joins import find_joins
from auditor.walk.patch import patch
from auditor.walk.records import iter_tensors
from auditor.walk.tree import ModuleTree
from benchmarks.capture_overhead import subjects


def _demo_subject(name: str, samples: int) -> tuple[Subject, int]:
    config, _ = demo_config(name)
    config = config.with_overrides({"data.max_samples": samples})
    return load_subject(config), config.batch_size


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def gradient_pass_ratio(subject: Subject, batch_size: int, runs: int) -> tuple[float, float, float]:
    """(median of gradient-pass / plain forward over interleaved runs, plain s, gradient pass s)."""
    tree = ModuleTree(subject.model)
    needs = Needs(gradients=frozenset(tree.names))
    batches = list(subject.batches(batch_size))

    def plain() -> None:
        with torch.no_grad():
            for batch in batches:
                subject.adapter.forward(subject.model, batch.inputs)

    def gradient() -> None:
        run_capture(subject, tree, needs, batch_size=batch_size, progress=SilentProgress())

    plain(), gradient()
    ratios, p_best, g_best = [], float("inf"), float("inf")
    for _ in range(runs):
        p, _ = _timed(plain)
        g, _ = _timed(gradient)
        ratios.append(g / p)
        p_best, g_best = min(p_best, p), min(g_best, g)
    return statistics.median(ratios), p_best, g_best


def _forward_fn(subject: Subject, keys: list[str]) -> Callable[..., torch.Tensor]:
    def forward(*tensors: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(subject.adapter.forward(subject.model, dict(zip(keys, tensors, strict=True))), dim=1)
    return forward


def naive_against_capture(subject: Subject, batch_size: int) -> dict[str, float]:
    """Captum's LayerGradientXActivation once per module against one capture, on the same samples."""
    tree = ModuleTree(subject.model)
    names = [n for n in tree.names]
    capture_s, capture = _timed(lambda: run_capture(subject, tree, Needs(gradients=frozenset(names)),
                                                    batch_size=batch_size, progress=SilentProgress()))
    labels = subject.labels
    assert labels is not None
    batches = list(subject.batches(batch_size))
    keys = list(batches[0].inputs)
    forward = _forward_fn(subject, keys)
    ours = capture.grad_x_act
    compared, worst, naive_s = 0, 0.0, 0.0
    for name in names:
        if name not in ours or capture.records[name].calls == 0:
            continue
        layer = tree.get(name)
        per_batch = []
        started = time.perf_counter()
        try:
            for batch in batches:
                tensors = tuple(batch.inputs[k] for k in keys)
                attribution = LayerGradientXActivation(forward, layer).attribute(
                    tensors[0], target=labels[batch.start:batch.stop], additional_forward_args=tensors[1:])
                first = next(t for t in iter_tensors(attribution) if t.is_floating_point())
                per_batch.append(first.detach().reshape(len(batch), -1).sum(dim=1))
        except Exception:  # noqa: BLE001  (Captum cannot hook this module's output: not compared)
            continue
        naive_s += time.perf_counter() - started
        theirs = torch.cat(per_batch).double()
        mine = ours[name].double()
        scale = float(mine.abs().max()) or 1.0
        error = float(((mine - theirs).abs() / (1e-4 * theirs.abs() + 1e-4 * scale)).max())
        worst = max(worst, error)
        compared += 1
    return {"modules": compared, "capture_s": capture_s, "naive_s": naive_s, "ratio": naive_s / capture_s,
            "worst_error_over_tolerance": worst}


def conductance_against_captum(subject: Subject, batch_size: int, samples: int, steps: int) -> dict[str, float]:
    tree = ModuleTree(subject.model)
    blocks = find_blocks(tree, has_head=subject.loaded.has_head)
    joins = find_joins(subject, tree, blocks)
    points = tuple(dict.fromkeys(p for j in joins for p in (j.site, *j.branches)))
    embeddings = next(b.name for b in blocks if b.kind == "embeddings")
    labels = subject.labels
    assert labels is not None
    spec = SweepSpec(points=points, samples=tuple(range(samples)), n_steps=steps, rule="captum",
                     embeddings=embeddings)
    ours_s, ours = _timed(lambda: run_sweep(subject, tree, spec, labels=labels, batch_size=batch_size,
                                            progress=SilentProgress()))
    emb_module = tree.get(embeddings)
    inputs = subject.adapter.encode(0, samples)
    keys = [k for k in inputs if k != "input_ids"]
    captured: list[torch.Tensor] = []
    handle = emb_module.register_forward_hook(lambda m, a, o: captured.append(o.detach()))
    with torch.no_grad():
        subject.adapter.forward(subject.model, inputs)
        subject.adapter.forward(subject.model, dict(inputs, input_ids=subject.adapter.baseline_ids(inputs["input_ids"])))
    handle.remove()
    real, base = captured

    def forward(emb: torch.Tensor, input_ids: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        with patch(emb_module, output=emb):
            scores = subject.adapter.forward(subject.model, dict(zip(["input_ids", *keys], [input_ids, *rest],
                                                                     strict=True)))
        return torch.log_softmax(scores, dim=1)

    worst, theirs_s = 0.0, 0.0
    target = labels[:samples]
    for point in points:
        layer = tree.get(point.module)
        started = time.perf_counter()
        attribution = LayerConductance(forward, layer).attribute(
            real, baselines=base, target=target, n_steps=steps,
            additional_forward_args=(inputs["input_ids"], *[inputs[k] for k in keys]),
            attribute_to_layer_input=point.where == "input")
        theirs_s += time.perf_counter() - started
        first = next(t for t in iter_tensors(attribution) if t.is_floating_point())
        theirs = first.detach().reshape(samples, -1).sum(dim=1).double()
        mine = ours.conductance[point].double()
        scale = float(mine.abs().max()) or 1.0
        worst = max(worst, float(((mine - theirs).abs() / (1e-4 * theirs.abs() + 1e-4 * scale)).max()))
    return {"points": len(points), "ours_s": ours_s, "captum_s": theirs_s, "ratio": theirs_s / ours_s,
            "worst_error_over_tolerance": worst}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=64, help="samples for the naive Captum comparison")
    parser.add_argument("--conductance-samples", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("1. gradient pass (hooked forward + backward, every module) / plain forward, median of "
          f"{args.runs} interleaved runs (bar: <= 2.5)")
    for bench in subjects(["minilm_sentiment", "resnet18_shaped"]):
        ratio, plain_s, grad_s = gradient_pass_ratio(bench.subject, bench.batch_size, args.runs)
        print(f"   {bench.name:18} plain {plain_s:7.3f} s  gradient pass {grad_s:7.3f} s  ratio {ratio:5.2f}")
    print("2. Captum LayerGradientXActivation once per module / one capture, same samples (bar: >= 30x on MiniLM)")
    for name, samples in (("digits_cnn", 360), ("minilm_sentiment", args.samples)):
        subject, batch_size = _demo_subject(name, samples)
        r = naive_against_capture(subject, batch_size)
        print(f"   {name:18} {len(subject):>4} samples, {int(r['modules']):>3} modules: capture {r['capture_s']:6.2f} s, "
              f"naive {r['naive_s']:7.2f} s, naive/capture {r['ratio']:6.1f}x; worst |error| / tolerance "
              f"{r['worst_error_over_tolerance']:.3f} (<= 1: the same numbers)")
    print(f"3. Captum LayerConductance once per point / one sweep, MiniLM, {args.conductance_samples} samples, "
          f"{args.steps} steps")
    subject, batch_size = _demo_subject("minilm_sentiment", 300)
    r = conductance_against_captum(subject, batch_size, args.conductance_samples, args.steps)
    print(f"   {int(r['points'])} points (sums and branches of every residual join): sweep {r['ours_s']:.2f} s, "
          f"Captum {r['captum_s']:.2f} s, Captum/sweep {r['ratio']:.1f}x; worst |error| / tolerance "
          f"{r['worst_error_over_tolerance']:.3f}")


if __name__ == "__main__":
    main()
