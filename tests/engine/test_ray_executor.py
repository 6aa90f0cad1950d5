"""The Ray executor on a real local Ray cluster (2 CPUs, 2 actors, started once per session): audits equal to the
local executor's, a killed actor's tasks rerun elsewhere with the same result, an unreachable cluster is one
`error:` line and exit 2, and the local path never imports Ray."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from auditor.config import AuditConfig
from auditor.engine.shards import MERGE_RTOL
from auditor.progress import SilentProgress
from auditor.schema.report import AuditReport

if os.environ.get("CI"):
    import ray  # CI installs the [ray] extra: a missing Ray fails here, never skips
else:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")

ANALYSES = ["inventory", "performance", "ablation", "probes", "attribution", "trust"]
"""The capture (inventory's module statistics), patched passes (ablation), probe-set and randomized captures
(probes), the executor's `map` items: attribution's Integrated Gradients chunks and trust's randomization-cascade
steps (the deletion test and the rest of trust run on the driver)."""
MAPPED = ("attribution", "trust")
"""Sections whose remote work is per-sample or per-step on a replica with the local run's threads: equal bit for
bit, with no merge in between."""


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """One local Ray cluster for the whole session, on 127.0.0.1 only."""
    if ray.is_initialized():
        yield
        return
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             logging_level="WARNING")
    try:
        yield
    finally:
        ray.shutdown()


def _demo(name: str, **overrides: Any) -> AuditConfig:
    from auditor.demo import demo_config

    config, _ = demo_config(name)
    tables = {"analyses.probes": {"permutations": 2, "mdl": False, "folds": 2}}  # the fits stay local: kept short
    # One torch thread, as each actor has (cpus_per_actor = 1): float32 reductions split over another number of
    # threads round differently, locally as on Ray, and the audit would then choose its threads by timing.
    return config.with_overrides({"analyses.only": ANALYSES, "threads": 1, **tables, **overrides})


def _audit(config: AuditConfig, progress: Any = None, **executor: Any) -> AuditReport:
    from auditor.pipeline import run_audit

    if executor:
        config = config.with_overrides({f"executor.{k}": v for k, v in executor.items()})
    return run_audit(config, progress=progress or SilentProgress())


def _close(a: float, b: float) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b or abs(a - b) <= MERGE_RTOL * max(abs(a), abs(b)) + 1e-12


def assert_same_audit(local: AuditReport, remote: AuditReport, *, ablation_rtol: float = MERGE_RTOL) -> None:
    """Same findings (ids, severities, messages), same metrics and module_metrics (to the merge's tolerance;
    the ablation's to `ablation_rtol` where stacked groups differ; the `MAPPED` sections' exactly, and their
    details too), same module statistics."""
    assert [(f.id, f.severity, f.message) for f in local.findings] == \
        [(f.id, f.severity, f.message) for f in remote.findings]
    assert [s.id for s in local.sections] == [s.id for s in remote.sections]
    for ours, theirs in zip(local.sections, remote.sections, strict=True):
        assert ours.error is None and theirs.error is None, (ours.error, theirs.error)
        rtol = ablation_rtol if ours.id == "ablation" else 0.0 if ours.id in MAPPED else MERGE_RTOL
        atol = 1e-12 if rtol else 0.0
        assert ours.metrics.keys() == theirs.metrics.keys()
        for key, value in ours.metrics.items():
            assert value == pytest.approx(theirs.metrics[key], rel=rtol, abs=atol, nan_ok=True), \
                (ours.id, key)
        assert ours.module_metrics.keys() == theirs.module_metrics.keys(), ours.id
        for module, values in ours.module_metrics.items():
            assert values.keys() == theirs.module_metrics[module].keys(), (ours.id, module)
            for key, value in values.items():
                other = theirs.module_metrics[module][key]
                assert value == pytest.approx(other, rel=rtol, abs=atol, nan_ok=True), \
                    (ours.id, module, key)
        if ours.id in MAPPED:
            assert ours.details == theirs.details, ours.id  # the maps' summaries, samples, word rankings
    assert len(local.modules) == len(remote.modules)
    for ours, theirs in zip(local.modules, remote.modules, strict=True):
        _same(ours.model_dump(), theirs.model_dump(), where=ours.name)


def _same(a: Any, b: Any, *, where: str) -> None:
    """Equal module rows, floats to the merge's tolerance; the time shares are timings (never equal)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            if key != "time_share":
                _same(a[key], b[key], where=f"{where}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, where=f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert _close(a, b), (where, a, b)
    else:
        assert a == b, (where, a, b)


@pytest.fixture(scope="module")
def digits() -> tuple[AuditConfig, AuditReport]:
    """The digits demo's config (256 samples in 2 batches) and its local audit, shared by two tests."""
    config = _demo("digits_cnn", **{"data.max_samples": 256})
    return config, _audit(config)


@pytest.mark.slow
def test_digits_audit_on_two_actors_equals_the_local_one(ray_cluster: None,
                                                         digits: tuple[AuditConfig, AuditReport]) -> None:
    config, local = digits
    remote = _audit(config, kind="ray", actors=2)
    # stack=1 on the CNN's ablations would be bit for bit; stacked groups sum in another order (stacking.STACK_RTOL)
    assert_same_audit(local, remote, ablation_rtol=1e-4)
    ablation, trust = remote.section("ablation"), remote.section("trust")
    assert ablation is not None and ablation.metrics
    assert trust is not None and len(trust.details["steps"]) >= 3 and trust.module_metrics


class KillingProgress(SilentProgress):
    """Kills every actor of the audit once, when `after` tasks have finished: the tasks then in flight die
    with their actors."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.finished = 0
        self.killed: list[str] = []

    def advance(self, steps: int = 1, *, description: str | None = None) -> None:
        self.finished += 1
        if self.finished == self.after and not self.killed:
            from auditor.engine.ray_executor import ACTOR_PREFIX

            for entry in ray.util.list_named_actors(all_namespaces=True):
                name = entry["name"] if isinstance(entry, dict) else entry
                if name.startswith(ACTOR_PREFIX):
                    namespace = entry.get("namespace") if isinstance(entry, dict) else None
                    ray.kill(ray.get_actor(name, namespace=namespace))
                    self.killed.append(name)


@pytest.mark.slow
def test_an_actor_killed_mid_audit_has_its_passes_rerun_with_the_same_result(
        ray_cluster: None, digits: tuple[AuditConfig, AuditReport]) -> None:
    config, local = digits
    progress = KillingProgress(after=3)  # the capture's 2 shards and the first group of ablations are done
    remote = _audit(config, progress, kind="ray", actors=2)
    assert len(progress.killed) == 2
    assert progress.finished > 3  # the audit went on after the kill
    assert_same_audit(local, remote, ablation_rtol=1e-4)


@pytest.mark.slow
def test_minilm_audit_on_two_actors_equals_the_local_one(ray_cluster: None) -> None:
    # Kept to ~30 s a run on 2 cores: trust's text explanations take minutes here (the digits test runs its
    # cascade on the actors), and the probe set of its own is the digits test's; 32 samples in 2 batches (a shard
    # per actor); the blocks' ablations and one pruning step; the probes' randomized-network capture on the audit
    # data; attribution's text chunks (Layer IG over the embeddings, the word ranking) on a few samples.
    config = _demo("minilm_sentiment", **{
        "data.max_samples": 32, "batch_size": 16,
        "analyses.only": ["inventory", "performance", "ablation", "probes", "attribution"],
        "analyses.ablation": {"modules": "blocks", "heads": False, "unit_layers": "none", "prune_fractions": [0.5],
                              "bootstrap": 100},
        "analyses.attribution": {"samples": 4, "n_steps": 4, "examples_per_class": 1, "misclassified": 1},
        "analyses.probes": {"permutations": 2, "mdl": False, "folds": 2, "builtin": False}})
    local = _audit(config)
    remote = _audit(config, kind="ray", actors=2)
    assert_same_audit(local, remote, ablation_rtol=1e-4)


def _item_on_replica(subject: Any, item: tuple[str, int]) -> tuple[int, int, int]:
    """A `map` item: the actor's pid, the item's number and the replica's sample count. Item 1's first run kills
    its actor (the marker file says it ran once)."""
    from pathlib import Path

    marker, number = Path(item[0]), item[1]
    if number == 1 and not marker.exists():
        marker.touch()
        os._exit(1)
    return os.getpid(), number, len(subject)


class CountingProgress(SilentProgress):
    def __init__(self) -> None:
        self.steps: dict[str | None, int] = {}

    def advance(self, steps: int = 1, *, description: str | None = None) -> None:
        self.steps[description] = self.steps.get(description, 0) + steps


@pytest.mark.slow
def test_map_runs_items_on_the_actors_in_order_and_reruns_one_whose_actor_died(ray_cluster: None,
                                                                               tmp_path: Any) -> None:
    import numpy as np
    import torch

    from auditor.config import ExecutorSpec
    from auditor.engine.ray_executor import RayExecutor
    from tests.contexts import make_context

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    rng = np.random.default_rng(0)
    ctx = make_context(model, rng.normal(size=(8, 1, 4, 4)).astype(np.float32), rng.integers(0, 3, 8), batch_size=4)
    progress = CountingProgress()
    module = sys.modules[__name__]  # pytest imports this file by a name the workers cannot import: ship it by value
    ray.cloudpickle.register_pickle_by_value(module)
    executor = RayExecutor(ctx.subject, ctx.tree, batch_size=4, progress=progress,
                           spec=ExecutorSpec(kind="ray", actors=2, cpus_per_actor=1))
    try:
        items = [(str(tmp_path / "ran"), i) for i in range(6)]
        results = executor.map(_item_on_replica, items, description="items", steps=[2] * 6)
        restarts = executor.restarts
    finally:
        executor.close()
        ray.cloudpickle.unregister_pickle_by_value(module)
    assert [r[1] for r in results] == list(range(6)) and {r[2] for r in results} == {8}
    assert os.getpid() not in {r[0] for r in results}  # on the actors, not here
    assert restarts == 1 and (tmp_path / "ran").exists()  # item 1's actor died; the item ran again elsewhere
    assert progress.steps == {"items": 12}


def test_an_unreachable_cluster_is_one_error_line_and_exit_2(tiny_cnn_npz: Any, tmp_path: Any) -> None:
    # a fresh process: this one may hold the session's cluster already
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run(
        [sys.executable, "-m", "auditor", "run", "--model", "tests.models:build_tiny_cnn", "--data",
         str(tiny_cnn_npz), "--out", str(tmp_path / "out"), "--executor", "ray", "--ray-address", "127.0.0.1:9",
         "--quiet"], capture_output=True, text=True, timeout=120, env=env, cwd=os.getcwd())
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr
    assert "127.0.0.1:9" in lines[0] and "Ray cluster" in lines[0]
    assert not (tmp_path / "out").exists()


def test_the_local_path_never_imports_ray(tiny_cnn_npz: Any) -> None:
    code = ("import sys, auditor, numpy as np\n"
            f"d = np.load({str(tiny_cnn_npz)!r})\n"
            "from tests.models import build_tiny_cnn\n"
            "r = auditor.audit(build_tiny_cnn(), (d['x'], d['y']), analyses=['inventory', 'ablation'])\n"
            "assert r.section('ablation').error is None\n"
            "print('ray' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=os.getcwd())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_shards_are_contiguous_and_groups_whole_stacks() -> None:
    from auditor.engine.ray_executor import pass_groups, shard_starts

    assert shard_starts(300, 32, 2) == [[0, 32, 64, 96, 128], [160, 192, 224, 256, 288]]
    assert shard_starts(10, 32, 4) == [[0]]
    groups = pass_groups(517, 2, 8)
    assert [i for g in groups for i in g] == list(range(517))
    assert all(len(g) % 8 == 0 for g in groups[:-1]) and len(groups) <= 8
