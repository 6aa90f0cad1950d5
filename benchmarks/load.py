"""A demo audit alone and beside a competing 2-thread torch job, as a ratio measured in one run.

    python -m benchmarks.load --demo digits_cnn --runs 3
    python -m benchmarks.load --demo minilm_sentiment --analyses capture,ablation --runs 2

Each run audits the demo four times, interleaved: with the audit's own thread choice (`threads` unset) and
with torch's default (one thread per core, `--threads` = the cores), each once alone and once while a
second process multiplies matrices on 2 threads (the competing job, started a second before and stopped
after). The ratio loaded / alone is printed per run and as the median; the bar is 2. The machine's load
average is printed beside each run: on a machine shared with other work, "alone" is only as quiet as it is.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

COMPETITOR = """
import sys
import torch
torch.set_num_threads(2)
a = torch.randn(384, 384)
b = a @ a
print("running", flush=True)
while True:
    b = a @ a
"""


def _audit_seconds(demo: str, threads: int | None, analyses: list[str] | None, max_samples: int | None) -> tuple[float, str]:
    from auditor.demo import demo_config
    from auditor.pipeline import run_audit

    config, notes = demo_config(demo)
    overrides: dict[str, object] = {"threads": threads}
    if analyses:
        overrides["analyses.only"] = analyses
    if max_samples:
        overrides["data.max_samples"] = max_samples
    config = config.with_overrides(overrides)
    started = time.perf_counter()
    report = run_audit(config, notes=notes)
    return time.perf_counter() - started, report.metadata.threads_reason or ""


def _with_competitor(run):  # type: ignore[no-untyped-def]
    """`run()` while the competing job computes: started first, and waited for until its first product is done (its
    `import torch` takes seconds; a sleep of one second let the audit's thread choice run before the job did)."""
    job = subprocess.Popen([sys.executable, "-c", COMPETITOR], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True)
    try:
        assert job.stdout is not None
        job.stdout.readline()  # "running"
        time.sleep(0.5)
        return run()
    finally:
        job.kill()
        job.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", default="digits_cnn")
    parser.add_argument("--analyses", default="", help="comma-separated analyses (default: the whole audit)")
    parser.add_argument("--max-samples", type=int, default=None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-default", action="store_true", help="skip torch's default thread count")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if "OMP_NUM_THREADS" in os.environ:
        print("note: OMP_NUM_THREADS is set; the audit's own choice follows it", file=sys.stderr)
    from auditor.engine.threads import available_cores

    analyses = [a for a in args.analyses.split(",") if a] or None
    cores = available_cores()
    _audit_seconds(args.demo, None, analyses, args.max_samples)  # warm-up: the demo model trains once, caches
    modes = [("chosen", None)] + ([] if args.no_default else [(f"{cores} threads (torch's default)", cores)])
    ratios: dict[str, list[float]] = {name: [] for name, _ in modes}
    for run in range(args.runs):
        for name, threads in modes if run % 2 == 0 else modes[::-1]:
            load = os.getloadavg()[0]
            alone, why = _audit_seconds(args.demo, threads, analyses, args.max_samples)
            loaded, why_loaded = _with_competitor(lambda t=threads: _audit_seconds(args.demo, t, analyses, args.max_samples))
            ratios[name].append(loaded / alone)
            print(f"run {run + 1} {name:<28} alone {alone:7.2f} s ({why}); beside a 2-thread job {loaded:7.2f} s "
                  f"({why_loaded}); ratio {loaded / alone:.2f} (load average {load:.1f})", flush=True)
    for name, values in ratios.items():
        print(f"{args.demo} {name}: loaded / alone median {statistics.median(values):.2f} "
              f"(runs {', '.join(f'{v:.2f}' for v in values)}; bar 2)")


if __name__ == "__main__":
    main()
