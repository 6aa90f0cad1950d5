"""Cost of the hooked module walk against a plain forward, measured in the same run, as ratios.

For each embedded demo model over its audit data, at the demo's batch size (digits CNN 128, MiniLM 32):
  plain   one forward per batch, no hooks
  walk    the Recorder's hooked forward per batch (every module summarized), as `auditor run` does
  naive   one forward per module per batch, hooking only that module (the per-module loop the walk
          replaces), measured on the first batch and scaled to all batches
Prints min-of-N times and ratios (each sample averages enough passes to last ~0.3 s); the
issue's bar is walk/plain <= 1.3.

    python benchmarks/walk_overhead.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from auditor.demo import demo_config
from auditor.subject import load_subject
from auditor.walk import ModuleTree, Recorder
from auditor.walk.recorder import iter_tensors
from auditor.walk.stats import Scratch, summarize


def measure(name: str, repeats: int) -> dict[str, float]:
    config, _ = demo_config(name)
    batch_size = config.batch_size  # the demo's own: 128 for the digits CNN, 32 for MiniLM
    subject = load_subject(config)
    model, adapter = subject.model, subject.adapter
    batches = [b.inputs for b in subject.batches(batch_size)]
    tree = ModuleTree(model)

    def plain() -> None:
        for inputs in batches:
            adapter.forward(model, inputs)

    def walk() -> None:
        with Recorder(tree) as recorder:
            for inputs in batches:
                recorder.begin_forward()
                adapter.forward(model, inputs)

    def naive_first_batch() -> None:
        scratch = Scratch()

        def keep(module: torch.nn.Module, args: object, out: object) -> None:  # None: output unchanged
            for tensor in iter_tensors(out):
                if tensor.is_floating_point():
                    summarize(tensor, module, scratch)
                    break

        for _, module in tree.modules():
            handle = module.register_forward_hook(keep)
            try:
                adapter.forward(model, batches[0])
            finally:
                handle.remove()

    times: dict[str, list[float]] = {"plain": [], "walk": []}
    with torch.no_grad():
        plain(), walk()  # warm-up
        started = time.perf_counter()
        plain()
        # A pass over the digits takes ~10 ms: time several per sample so timer and scheduler noise fade.
        inner = max(1, math.ceil(0.3 / (time.perf_counter() - started)))
        for _ in range(repeats):  # interleaved, so drift in machine load hits both alike
            for label, fn in (("plain", plain), ("walk", walk)):
                started = time.perf_counter()
                for _ in range(inner):
                    fn()
                times[label].append((time.perf_counter() - started) / inner)
        started = time.perf_counter()
        naive_first_batch()
        naive = (time.perf_counter() - started) * len(batches)
    best = {k: min(v) for k, v in times.items()}
    return {"batch": batch_size, "modules": len(tree), "samples": len(subject), "batches": len(batches),
            "plain_s": best["plain"], "walk_s": best["walk"], "naive_s": naive,
            "walk_over_plain": best["walk"] / best["plain"],
            "walk_over_plain_median": statistics.median(w / p for p, w in zip(times["plain"], times["walk"], strict=True)),
            "naive_over_walk": naive / best["walk"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, min and median of {args.repeats} interleaved pairs")
    header = f"{'model':18} {'batch':>5} {'modules':>7} {'samples':>7} {'plain s':>8} {'walk s':>8} {'walk/plain':>10} " \
             f"{'median of pairs':>15} {'naive/walk':>10}"
    print(header)
    for name in ("digits_cnn", "minilm_sentiment"):
        r = measure(name, args.repeats)
        print(f"{name:18} {r['batch']:>5} {r['modules']:>7} {r['samples']:>7} {r['plain_s']:>8.3f} {r['walk_s']:>8.3f} "
              f"{r['walk_over_plain']:>10.2f} {r['walk_over_plain_median']:>15.2f} {r['naive_over_walk']:>10.1f}")


if __name__ == "__main__":
    main()
