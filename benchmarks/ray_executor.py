"""The Ray executor against the local one on the MiniLM demo's ablation passes, in one run.

Both run the same patched passes (every block and leaf with parameters zeroed: the ablation analysis's
default targets) on cached prefixes, stacked as the analysis stacks them:

- local: `LocalExecutor.patched_run` in this process on `--threads` torch threads (default 2: both cores);
- ray: `RayExecutor.patched_run` on a local Ray cluster with 2 actors of 1 CPU (1 torch thread) each.

Also measured: starting the actors (each deserializes its replica from the object store), one empty task's
round trip (Ray's overhead per task), and the largest difference between the two executors' scores.

On this machine's 2 cores the two actors have no more cores than the local run: what it shows is the overhead
Ray adds (actor start, a recording pass per group of passes, pickling tasks and results), not a speed-up; on a
cluster the time of the passes divides by the actors while that overhead stays about as it is here.

    python -m benchmarks.ray_executor [--samples 64] [--runs 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from auditor.config import ExecutorSpec
from auditor.engine.capture import run_capture
from auditor.engine.executor import LocalExecutor
from auditor.engine.stacking import stacking_check
from auditor.progress import SilentProgress
from auditor.walk.needs import Needs
from benchmarks.ablation import _passes, _subject


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--stack", type=int, default=8)
    args = parser.parse_args()

    import ray

    from auditor.engine.ray_executor import RayExecutor

    torch.set_num_threads(args.threads)
    subject, config = _subject("minilm_sentiment", args.samples)
    ctx, passes = _passes(subject, config)
    batch = config.batch_size
    capture = run_capture(subject, ctx.tree, Needs(), batch_size=batch, progress=SilentProgress())
    seconds = {name: record.seconds for name, record in capture.records.items()}
    stack = args.stack if stacking_check(subject, batch) else 1
    kwargs = dict(traced=ctx.traced, seconds=seconds, cache_bytes=256 << 20, stack=stack)
    local = LocalExecutor(subject, ctx.tree, batch_size=batch, progress=SilentProgress())

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             logging_level="WARNING")
    try:
        began = time.perf_counter()
        remote = RayExecutor(subject, ctx.tree, batch_size=batch, progress=SilentProgress(),
                             spec=ExecutorSpec(kind="ray", actors=2, cpus_per_actor=1))
        start_s = time.perf_counter() - began
        trips = []
        for _ in range(20):
            t = time.perf_counter()
            ray.get(remote.actors[0].ready.remote())
            trips.append(time.perf_counter() - t)
        local_s, ray_s, diff = [], [], 0.0
        for _ in range(args.runs):  # interleaved
            t = time.perf_counter()
            ours = local.patched_run(passes, **kwargs)
            local_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            theirs = remote.patched_run(passes, **kwargs)
            ray_s.append(time.perf_counter() - t)
            diff = max(diff, max(float((a - b).abs().max()) for a, b in zip(ours.scores, theirs.scores, strict=True)))
        tasks = remote.tasks // args.runs
        remote.close()
    finally:
        ray.shutdown()
    lo, rr = statistics.median(local_s), statistics.median(ray_s)
    print(f"MiniLM, {args.samples} samples, batch {batch}: {len(passes)} ablation passes, stack {stack}")
    print(f"  local ({args.threads} torch threads):      {lo:7.2f} s  ({lo / len(passes) * 1e3:.1f} ms per pass)")
    print(f"  ray (2 actors x 1 CPU, {tasks} tasks): {rr:7.2f} s  ({rr / len(passes) * 1e3:.1f} ms per pass)")
    print(f"  ray / local: {rr / lo:.2f}   starting 2 actors: {start_s:.2f} s   "
          f"empty task round trip: {statistics.median(trips) * 1e3:.2f} ms")
    print(f"  largest |score difference| ray vs local: {diff:.2e}")


if __name__ == "__main__":
    main()
