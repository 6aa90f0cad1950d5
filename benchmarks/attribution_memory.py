"""Peak memory of Integrated Gradients on the MiniLM demo at batch 32: the attribution analysis's bounded
call against Captum's default call, each in a fresh process, as the peak resident-memory increase over
the process's level before the call. The bar: under 1 GB for the analysis's call.

    python -m benchmarks.attribution_memory [--steps 32] [--batch 32]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time


def _rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def measure(mode: str, steps: int, batch: int) -> dict[str, float]:
    """Runs in the child: one LIG call over `batch` sentences, peak RSS increase sampled every 2 ms."""
    import torch
    from captum.attr import LayerIntegratedGradients

    from auditor.kit.captum import internal_batch_size
    from auditor.demo import demo_config
    from auditor.subject import load_subject
    from auditor.subject.task import log_probabilities
    from auditor.walk.blocks import find_blocks
    from auditor.walk.tree import ModuleTree

    config, _ = demo_config("minilm_sentiment")
    subject = load_subject(config)
    tree = ModuleTree(subject.model)
    layer = tree.get(next(b.name for b in find_blocks(tree) if b.kind == "embeddings"))
    inputs = subject.adapter.encode(0, batch)
    keys = [k for k in inputs if k != "input_ids"]

    def forward(ids: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        return log_probabilities(subject.adapter.forward(subject.model, dict(input_ids=ids, **dict(zip(keys, rest,
                                                                                                   strict=True)))))

    internal = internal_batch_size(subject, 512) if mode == "bounded" else None
    lig = LayerIntegratedGradients(forward, layer)
    args = dict(baselines=subject.adapter.baseline_ids(inputs["input_ids"]), target=subject.labels[:batch],
                additional_forward_args=tuple(inputs[k] for k in keys), n_steps=steps)
    lig.attribute(inputs["input_ids"][:2], **{**args, "baselines": args["baselines"][:2], "target": args["target"][:2],
                                              "additional_forward_args": tuple(a[:2] for a in args["additional_forward_args"])},
                  internal_batch_size=internal)  # warm-up: allocator pools and lazy inits
    before = _rss_bytes()
    peak = [before]
    running = [True]

    def sample() -> None:
        while running[0]:
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    lig.attribute(inputs["input_ids"], internal_batch_size=internal, **args)
    seconds = time.perf_counter() - started
    running[0] = False
    sampler.join()
    return {"peak_increase_mb": (peak[0] - before) / 2**20, "seconds": seconds,
            "internal_batch_size": float(internal or batch * steps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--child", choices=["bounded", "default"])
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.steps, args.batch)))
        return
    print(f"Integrated Gradients (LIG over the embeddings), MiniLM demo, {args.batch} sentences × {args.steps} steps; "
          "peak RSS increase in a fresh process (bar: analysis < 1 GB)")
    for mode, label in (("bounded", "analysis (512 MB budget)"), ("default", "Captum's default call")):
        out = subprocess.run([sys.executable, "-m", "benchmarks.attribution_memory", "--child", mode,
                              "--steps", str(args.steps), "--batch", str(args.batch)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"   {label:26} rows per batch {int(r['internal_batch_size']):>5}  peak +{r['peak_increase_mb']:7.0f} MB  "
              f"{r['seconds']:6.1f} s")


if __name__ == "__main__":
    main()
