"""The ablation analysis with its passes stacked (several ablations per forward) against one at a time.

    python -m benchmarks.ablation_stack --demo minilm_sentiment --runs 2 [--threads 2]

Each run audits the demo with only the ablation analysis twice, interleaved (order alternating): with
`[analyses.ablation] stack = 1` (one pass per forward, on cached prefixes) and with the default stacking.
It prints the passes' time (the recording pass included) in plain forwards over the audit data (the
report's own timed forward of one batch, times the batches) and checks that both give the same findings
and metrics to within float rounding. Bar: the 517 MiniLM passes in fewer than 85 forward-equivalents.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics

from auditor.demo import demo_config
from auditor.pipeline import run_audit


def _run(demo: str, stack: int | None, threads: int | None):  # type: ignore[no-untyped-def]
    config, notes = demo_config(demo)
    table = dict(config.analyses.table("ablation"))
    if stack is not None:
        table["stack"] = stack
    config = config.with_overrides({"threads": threads, "analyses.only": ["ablation"], "analyses.ablation": table})
    report = run_audit(config, notes=notes)
    section = report.section("ablation")
    cache = section.details["cache"]
    per_forward = report.metadata.budget_seconds["capture"]  # one plain forward over the data (no backward here)
    return report, cache["seconds"], cache["seconds"] / per_forward, cache.get("forwards"), section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", default="minilm_sentiment")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    results: dict[str, list[float]] = {"one at a time": [], "stacked": []}
    for run in range(args.runs):
        modes = [("one at a time", 1), ("stacked", None)]
        got = {}
        for name, stack in modes if run % 2 == 0 else modes[::-1]:
            report, seconds, equivalents, forwards, section = _run(args.demo, stack, args.threads)
            got[name] = (report, section)
            results[name].append(equivalents)
            print(f"run {run + 1} {name:<14} {section.metrics.get('passes', math.nan):.0f} passes in {forwards} "
                  f"forwards: {seconds:.1f} s = {equivalents:.1f} plain forwards over the data "
                  f"({report.metadata.threads_reason}; load average {os.getloadavg()[0]:.1f})", flush=True)
        (a, sa), (b, sb) = got["one at a time"], got["stacked"]
        same = [(f.id, f.module, f.message) for f in a.findings] == [(f.id, f.module, f.message) for f in b.findings]
        worst = max((abs(v - sb.metrics[k]) for k, v in sa.metrics.items() if k in sb.metrics
                     and not (math.isnan(v) and math.isnan(sb.metrics[k]))), default=0.0)
        print(f"  same findings: {same}; worst metric difference {worst:.2e}")
    for name, values in results.items():
        print(f"{args.demo} {name}: median {statistics.median(values):.1f} forward-equivalents "
              f"(runs {', '.join(f'{v:.1f}' for v in values)}; bar < 85 on MiniLM)")


if __name__ == "__main__":
    main()
