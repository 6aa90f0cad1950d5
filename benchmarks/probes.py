"""The probes' fits against the capture pass they read, and against nested cross-validation with an iterative
logistic-regression solver (the obvious way), on the MiniLM demo's audit data.

1. Capture: one pass over the audit data recording every block's pooled output and the head's pooled input
   (what the probes add to the shared capture).
2. Fits: everything the probes analysis computes for the audit labels from those representations: per block
   the ridge probe in k folds for the true labels and every label permutation, the same probe on the
   re-initialized network's representations, the online code length (MDL) on both, and the head lens.
   Bar: less time than the capture pass.
3. Nested CV: scikit-learn's `LogisticRegression` (lbfgs) with C chosen by an inner 5-fold grid search
   inside each of the same outer folds, true labels only (no permutation, no random network, no MDL),
   on every block. Its accuracies are printed beside the ridge probe's.

Each timing is the median of `--runs` interleaved runs (capture, then fits); nested CV runs once.

    python -m benchmarks.probes [--runs 3] [--skip-nested] [--threads 1] [--demo digits_cnn]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from auditor.engine.analysis import AuditContext
from auditor.analyses.probes.analysis import Probes
from auditor.analyses.probes.representations import head_block, probe_needs, probed_order, representations
from auditor.demo import demo_config
from auditor.engine.executor import LocalExecutor
from auditor.pipeline import plan_subject
from auditor.analyses.probes.random_init import fresh_weights
from auditor.analyses.probes.ridge import canonical_order, stratified_folds
from auditor.analyses.probes.sets import audit_labels
from auditor.progress import SilentProgress
from auditor.subject import load_subject
from auditor.walk.patch import Patch

NESTED_GRID = np.logspace(-4, 2, 7)
"""C of the nested baseline: 1e-4 .. 1e2 (on MiniLM the best C sits near 1e-2)."""


def _context(name: str) -> AuditContext:
    config, _ = demo_config(name)
    subject = load_subject(config)
    plan_ctx, _ = plan_subject(subject, config)
    executor = LocalExecutor(subject, plan_ctx.tree, batch_size=config.batch_size, progress=SilentProgress())
    return AuditContext.after(plan_ctx, capture=executor.capture(probe_needs(plan_ctx)), executor=executor)


def _timed(fn: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def nested_logistic(x: np.ndarray, labels: np.ndarray, folds: list[np.ndarray], seed: int) -> float:
    """Outer-fold accuracy of a logistic regression whose C an inner stratified 5-fold grid search chooses."""
    correct = 0
    for test in folds:
        train = np.setdiff1d(np.arange(len(labels)), test)
        search = GridSearchCV(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
                              {"logisticregression__C": NESTED_GRID},
                              cv=StratifiedKFold(5, shuffle=True, random_state=seed))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            search.fit(x[train], labels[train])
        correct += int((search.predict(x[test]) == labels[test]).sum())
    return correct / len(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", default="minilm_sentiment")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-nested", action="store_true")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads for the capture (0: torch's default); on a busy 2-core machine 1 is "
                             "faster and steadier than 2")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    ctx = _context(args.demo)
    analysis = Probes()
    needs, head = probe_needs(ctx), head_block(ctx)
    order = probed_order(ctx.capture, needs, head)
    probe_set = audit_labels(ctx)
    assert probe_set is not None, "the demo's audit data has labels"
    prop = probe_set.properties[0]
    patches = {"": Patch(weights=fresh_weights(ctx.subject.model, seed=0).weights)}
    random = representations(ctx.executor.capture(needs, patches=patches), needs, head)

    captures, fits, result = [], [], None
    for _ in range(args.runs):
        seconds, capture = _timed(lambda: ctx.executor.capture(needs))
        captures.append(seconds)
        trained = representations(capture, needs, head)

        def fit(trained: dict[str, np.ndarray] = trained) -> Any:
            with threadpool_limits(limits=1, user_api="blas"):  # as the analysis runs them
                return analysis._probe(ctx, probe_set, prop, trained, random, order, head)

        seconds, result = _timed(fit)
        fits.append(seconds)
    assert result is not None
    capture_s, fit_s = statistics.median(captures), statistics.median(fits)
    print(f"{args.demo}: torch threads {torch.get_num_threads()}, {probe_set.samples} samples, {len(order)} probed modules, {result.folds} folds, "
          f"{analysis.params.permutations} permutations")
    print(f"capture pass (pooled blocks + head input): {capture_s:.2f} s (runs {min(captures):.2f}-{max(captures):.2f})")
    print(f"probe fits (ridge + permutations + random network + MDL + head lens): {fit_s:.2f} s "
          f"(runs {min(fits):.2f}-{max(fits):.2f}); fits / capture = {fit_s / capture_s:.2f}")

    if args.skip_nested:
        return
    trained = representations(ctx.capture, needs, head)
    labels = prop.labels
    folds = stratified_folds(labels, folds=result.folds, seed=0, order=canonical_order(probe_set.keys, len(labels)))
    started, nested = time.perf_counter(), {}
    for name in order:
        nested[name] = nested_logistic(trained[name], labels, folds, seed=0)
    nested_s = time.perf_counter() - started
    print(f"nested CV, logistic regression (lbfgs), true labels only: {nested_s:.1f} s "
          f"= {nested_s / fit_s:.0f}x the probe fits, {nested_s / capture_s:.1f}x the capture")
    print(f"{'module':32s} {'ridge':>7s} {'logistic':>9s}")
    for name in order:
        print(f"{name:32s} {result.modules[name].accuracy:7.3f} {nested[name]:9.3f}")


if __name__ == "__main__":
    main()
