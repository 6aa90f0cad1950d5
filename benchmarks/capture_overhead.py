"""Cost of a plain audit's shared capture against a plain forward, measured in the same run, as ratios.

For each model over its audit data, at its batch size:
  plain    one forward per batch, no hooks
  capture  the shared capture of a plain audit (inventory + performance: every module's statistics),
           exactly as `auditor run` runs it
  naive    one forward per module per batch, hooking only that module (the per-module loop the capture
           replaces), timed on the first batch and scaled to all batches
Models: the digits CNN (demo, batch 128; its ~10 ms pass cannot be timed reliably on a shared machine),
MiniLM sentiment (demo, batch 32) and a ResNet-18-shaped net with random weights (224², batch 16).
The bar: capture/plain <= 1.3, as the median of 5 runs (each run the median of interleaved pairs).

    python benchmarks/capture_overhead.py [--runs 5] [--pairs 3]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from auditor.config import AuditConfig
from auditor.demo import demo_config
from auditor.engine.capture import run_capture
from auditor.walk.needs import Needs
from auditor.pipeline import _in_memory_data, _wrap_module
from auditor.progress import SilentProgress
from auditor.subject import Subject, build_subject, load_subject
from auditor.walk import ModuleTree
from auditor.walk.records import iter_tensors
from auditor.walk.stats import Scratch, summarize
from benchmarks.resnet18 import build as build_resnet18


@dataclass
class Bench:
    name: str
    subject: Subject
    batch_size: int


def subjects(names: list[str]) -> list[Bench]:
    out = []
    for name in names:
        if name == "resnet18_shaped":
            g = np.random.default_rng(0)
            x = g.standard_normal((32, 3, 224, 224)).astype(np.float32)
            config = AuditConfig(batch_size=16)
            data = _in_memory_data((x, np.arange(32) % 10), max_samples=32, seed=0)
            out.append(Bench(name, build_subject(_wrap_module(build_resnet18(), None), data, config), 16))
        else:
            config, _ = demo_config(name)
            out.append(Bench(name, load_subject(config), config.batch_size))
    return out


def _timed(fn: Callable[[], object], inner: int) -> float:
    started = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - started) / inner


def measure(bench: Bench, *, runs: int, pairs: int) -> dict[str, float]:
    subject, batch_size = bench.subject, bench.batch_size
    model, adapter = subject.model, subject.adapter
    batches = list(subject.batches(batch_size))  # encoded once, as the audit does
    tree = ModuleTree(model)

    def plain() -> None:
        with torch.no_grad():
            for batch in batches:
                adapter.forward(model, batch.inputs)

    def capture() -> None:
        run_capture(subject, tree, Needs(), batch_size=batch_size, progress=SilentProgress())

    plain(), capture()  # warm-up
    inner = max(1, math.ceil(0.3 / _timed(plain, 1)))  # ~10 ms passes: several per sample
    run_medians, plain_best, capture_best = [], math.inf, math.inf
    for _ in range(runs):
        ratios = []
        for _ in range(pairs):  # interleaved, so drift in machine load hits both alike
            p, c = _timed(plain, inner), _timed(capture, inner)
            plain_best, capture_best = min(plain_best, p), min(capture_best, c)
            ratios.append(c / p)
        run_medians.append(statistics.median(ratios))
    naive = _naive_first_batch(tree, adapter, model, batches[0].inputs) * len(batches)
    return {"batch": batch_size, "modules": len(tree), "samples": len(subject), "plain_s": plain_best,
            "capture_s": capture_best, "ratio": statistics.median(run_medians), "ratio_min": min(run_medians),
            "ratio_max": max(run_medians), "naive_over_capture": naive / capture_best}


def _naive_first_batch(tree: ModuleTree, adapter: object, model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> float:
    scratch = Scratch()

    def keep(module: torch.nn.Module, args: object, out: object) -> None:  # None: output unchanged
        for tensor in iter_tensors(out):
            if tensor.is_floating_point():
                summarize(tensor, module, scratch)
                break

    started = time.perf_counter()
    with torch.no_grad():
        for _, module in tree.modules():
            handle = module.register_forward_hook(keep)
            try:
                adapter.forward(model, inputs)  # type: ignore[attr-defined]  # a ModelAdapter
            finally:
                handle.remove()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--models", default="digits_cnn,minilm_sentiment,resnet18_shaped")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; capture/plain: median of {args.runs} runs "
          f"(each the median of {args.pairs} interleaved pairs), with the runs' range")
    print(f"{'model':18} {'batch':>5} {'modules':>7} {'samples':>7} {'plain s':>8} {'capture s':>9} "
          f"{'capture/plain':>13} {'range':>11} {'naive/capture':>13}")
    for bench in subjects(args.models.split(",")):
        r = measure(bench, runs=args.runs, pairs=args.pairs)
        print(f"{bench.name:18} {r['batch']:>5} {r['modules']:>7} {r['samples']:>7} {r['plain_s']:>8.3f} "
              f"{r['capture_s']:>9.3f} {r['ratio']:>13.2f} {r['ratio_min']:>5.2f}-{r['ratio_max']:<5.2f} "
              f"{r['naive_over_capture']:>13.1f}")


if __name__ == "__main__":
    main()
