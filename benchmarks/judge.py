"""The generator judge's passes against the naive per-module loop, in one run, as ratios.

On the digits GAN demo (1000 noise vectors), for every module the judge ablates by default (blocks and
leaves with parameters; residual blocks by their branches), mean ablation:

- naive: a full forward of the generator per ablated module (`LocalExecutor.scores`), then the judges
  (discriminator and digits CNN) on its samples;
- the judge's path: `AuditContext.patched_scores` (cached prefixes, its recording pass included), then the
  judges on each pass's samples once.

Both on the same noise, interleaved, in the same process; the samples must agree to 1e-6. The judges'
forwards are the same on both paths, so the ratio of the whole loop says how much of the work the prefixes
save where a judge reads every pass (the judges cost about as much as the generator here).

    python -m benchmarks.judge [--runs 3] [--samples 1000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from auditor.kit.removal import Selection, module_targets
from auditor.engine.analysis import AuditContext, PlanContext
from auditor.demo import demo_config
from auditor.engine.executor import LocalExecutor
from auditor.walk.needs import Needs
from auditor.engine.passes import PatchedPass
from auditor.progress import SilentProgress
from auditor.subject import load_subject
from auditor.walk.blocks import find_blocks
from auditor.walk.tree import ModuleTree

TOLERANCE = 1e-6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args()
    config, _ = demo_config("digits_gan")
    config = config.with_overrides({"data.max_samples": args.samples})
    subject = load_subject(config)
    judges = subject.judges
    assert judges is not None
    tree = ModuleTree(subject.model)
    plan = PlanContext(subject=subject, tree=tree, blocks=find_blocks(tree, has_head=False), config=config)
    executor = LocalExecutor(subject, tree, batch_size=config.batch_size, progress=SilentProgress())
    selection = Selection()
    names = [n for n in plan.traced if n]
    capture = executor.capture(Needs(unit_means=frozenset(names)))
    module_targets(plan, plan.traced, capture.unit_means, modules="default", mode="mean", selection=selection)
    passes = [PatchedPass(patches=t.patches, label=t.name) for t in selection.targets]
    ctx = AuditContext.after(plan, capture=capture, executor=executor)
    shape = subject.adapter.sample_shape
    assert shape is not None

    def judge_all(samples: list[torch.Tensor]) -> None:
        for s in samples:
            judges.score(s, shape, subject.conditions, batch_size=config.batch_size, device=subject.device)

    naive_s, ours_s, naive_gen, ours_gen, worst = [], [], [], [], 0.0
    for _ in range(args.runs):
        started = time.perf_counter()
        naive = executor.scores(passes)
        generated = time.perf_counter()
        judge_all(naive)
        naive_gen.append(generated - started)
        naive_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        ours, _, _ = ctx.patched_scores(passes, cache_bytes=256 << 20)
        generated = time.perf_counter()
        judge_all(ours)
        ours_gen.append(generated - started)
        ours_s.append(time.perf_counter() - started)
        worst = max(worst, *(float((a - b).abs().max()) for a, b in zip(naive, ours, strict=True)))
    ratios = [o / n for o, n in zip(ours_s, naive_s, strict=True)]
    gen_ratios = [o / n for o, n in zip(ours_gen, naive_gen, strict=True)]
    print(f"digits GAN, {len(subject)} noise vectors, {len(passes)} ablated modules, {args.runs} interleaved runs")
    print(f"  generator passes: naive {statistics.median(naive_gen):.2f} s, cached prefixes "
          f"{statistics.median(ours_gen):.2f} s, ratio {statistics.median(gen_ratios):.2f} "
          f"({', '.join(f'{r:.2f}' for r in gen_ratios)})")
    print(f"  with the judges:  naive {statistics.median(naive_s):.2f} s, judge's path {statistics.median(ours_s):.2f} s, "
          f"ratio {statistics.median(ratios):.2f} ({', '.join(f'{r:.2f}' for r in ratios)})")
    print(f"  largest sample difference: {worst:.2e} (must be <= {TOLERANCE:g})")
    if worst > TOLERANCE:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
