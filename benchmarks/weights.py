"""The weights analysis against WeightWatcher 0.7.7, in one run: time on MiniLM, α per layer on MiniLM and
the digits CNN.

1. Time, on the MiniLM demo encoder (all-MiniLM-L6-v2, 40 weight matrices), median of `--runs`:
   - the `weights` analysis as `auditor.audit(model, None, analyses=["weights"])` runs it (figures included);
   - WeightWatcher's `analyze(randomize=True, mp_fit=True)`: the same work (the ESD and its power-law fit,
     Marchenko–Pastur spikes, the shuffled-weights spectrum for correlation traps); bar: at least 5x;
   - WeightWatcher's default `analyze()` (ESD and fit only), and ours with `correlation_traps = false`, for
     reference.
2. α per layer, ours against WeightWatcher's, on the same matrices (Conv2d by kernel position, WeightWatcher's
   default) with the same x_min rule: the largest difference over the layers both fit, and every layer one
   fits and the other does not, with the reason. Bar: within 0.05.

WeightWatcher is a reference for checking only, never a dependency: without it (CI) only our times print.
Install it into a throwaway venv beside auditor's dependencies to run the comparison:

    python3 -m venv /tmp/wwvenv && /tmp/wwvenv/bin/pip install torch==2.13.0 && \\
        /tmp/wwvenv/bin/pip install weightwatcher==0.7.7 -e ".[demo]"
    /tmp/wwvenv/bin/python -m benchmarks.weights [--runs 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

import auditor
from auditor.analyses.weights import WeightsParams, layer_spectra
from auditor.schema.report import Section

TOLERANCE = 0.05
BAR = 5.0


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def _median(fn: Callable[[], Any], runs: int) -> tuple[float, float, float, Any]:
    times, result = [], None
    for _ in range(runs):
        seconds, result = _timed(fn)
        times.append(seconds)
    return statistics.median(times), min(times), max(times), result


def _ours(model: nn.Module, **params: Any) -> Section:
    config = auditor.AuditConfig.model_validate({"analyses": {"weights": params}})
    return auditor.audit(model, None, analyses=["weights"], config=config).section("weights")


def _minilm() -> nn.Module:
    from auditor.config import ModelSpec
    from auditor.demo.sentiment import encoder_dir
    from auditor.subject.loading import load_model

    return load_model(ModelSpec(path=str(encoder_dir()))).module


def _digits_cnn() -> nn.Module:
    from safetensors.torch import load_file

    from auditor.demo import cache_dir, digits

    model = digits.build_model()
    model.load_state_dict(load_file(str(digits.prepare(cache_dir())["weights"])))
    return model.eval()


def _weightwatcher() -> Any:
    try:
        import weightwatcher
    except ImportError:
        return None
    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    return weightwatcher


def _compare(name: str, section: Section, details: Any) -> float:
    """Prints α per layer, ours beside WeightWatcher's; returns the largest difference where both fit."""
    theirs = {str(row["longname"]): (float(row["alpha"]), int(row["num_evals"])) for _, row in details.iterrows()}
    ours = section.module_metric("weight_alpha")
    worst, only = 0.0, []
    layers = [*section.module_metrics, *(layer for layer in theirs if layer not in section.module_metrics)]
    for layer in layers:
        mine, (alpha, evals) = ours.get(layer), theirs.get(layer, (None, 0))
        if mine is not None and alpha is not None and alpha > 0:
            worst = max(worst, abs(mine - alpha))
        else:
            reason = section.details["not_fitted"].get(layer) or section.details["skipped"].get(layer) or \
                ("not a layer WeightWatcher analyses" if layer not in theirs else "")
            them = "skips it (fewer than 8 eigenvalues)" if layer not in theirs else f"{alpha:.3f} on {evals} eigenvalues"
            only.append(f"    {layer}: ours {'—' if mine is None else f'{mine:.3f}'} ({reason}); WeightWatcher {them}")
    both = sum(1 for layer in ours if layer in theirs)
    print(f"{name}: α on {both} layers both fit: largest |ours - WeightWatcher| = {worst:.2e} "
          f"({'within' if worst <= TOLERANCE else 'OVER'} {TOLERANCE})")
    if only:
        print("  fitted by one side only:")
        print("\n".join(only))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = _minilm()
    matrices = sum(1 for m in model.modules() if isinstance(getattr(m, "weight", None), torch.Tensor)
                   and m.weight.dim() >= 2)
    _ours(model)  # warm-up: imports, first LAPACK call, matplotlib
    full, full_lo, full_hi, section = _median(lambda: _ours(model), args.runs)
    light, *_ = _median(lambda: _ours(model, correlation_traps=False), args.runs)
    analysis = statistics.median([_ours(model).seconds for _ in range(args.runs)])
    modules = list(model.named_modules())
    core, *_ = _median(lambda: layer_spectra(modules, WeightsParams(correlation_traps=False), seed=0), args.runs)
    core_traps, *_ = _median(lambda: layer_spectra(modules, WeightsParams(), seed=0), args.runs)
    print(f"MiniLM ({matrices} weight matrices), torch threads {torch.get_num_threads()}, median of {args.runs}:")
    print(f"  ours, the whole audit without data: {full:.2f} s (runs {full_lo:.2f}-{full_hi:.2f}); the analysis "
          f"alone {analysis:.2f} s, of which figures and table {analysis - core_traps:.2f} s; without the shuffled "
          f"spectra: {light:.2f} s")
    print(f"  ours, the numbers alone (layer_spectra, no figures): {core_traps:.2f} s; without the shuffled spectra "
          f"{core:.2f} s")
    ww = _weightwatcher()
    if ww is None:
        print("weightwatcher is not installed: no reference timing or α comparison (see the module docstring)")
        return
    np.random.seed(0)  # WeightWatcher shuffles with NumPy's global generator
    same, same_lo, same_hi, details = _median(lambda: ww.WeightWatcher(model=model).analyze(randomize=True,
                                                                                            mp_fit=True),
                                              max(1, min(args.runs, 2)))
    plain, *_ = _median(lambda: ww.WeightWatcher(model=model).analyze(), args.runs)
    print(f"  WeightWatcher {ww.__version__} analyze(randomize=True, mp_fit=True), the same work: {same:.2f} s "
          f"(runs {same_lo:.2f}-{same_hi:.2f}): ours is {same / full:.1f}x faster "
          f"({'meets' if same / full >= BAR else 'MISSES'} the {BAR:g}x bar)")
    print(f"  WeightWatcher analyze() (ESD, fit and norms, no figures): {plain:.2f} s; ours without the shuffled "
          f"spectra, no figures: {core:.2f} s: {plain / core:.1f}x (with figures {light:.2f} s: {plain / light:.1f}x)")
    worst = _compare("MiniLM", section, details)
    digits = _digits_cnn()
    worst = max(worst, _compare("digits CNN", _ours(digits), ww.WeightWatcher(model=digits).analyze()))
    print(f"largest α difference over both models: {worst:.2e}")


if __name__ == "__main__":
    main()
