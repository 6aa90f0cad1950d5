"""`RayExecutor`: the plan's passes on the actors of a Ray cluster, with the local executor's results.

Imported only when `[executor] kind = "ray"` (`--executor ray`, `auditor.audit(..., executor="ray")`): the
local path never imports Ray.

- The subject (model, data, tokenizer) is put in Ray's object store once (`ray.put`); each actor deserializes
  one replica from it when it starts, and keeps it for the audit. Tasks carry only what differs: batch starts,
  patches, passes.
- The shared capture is sharded by batches: each actor records a contiguous run of batches (`CapturePart`),
  and the shards merge in data order (`auditor.engine.shards`) into what one pass records.
- Patched passes (ablations, pruning steps, judge passes) go in groups, one group per task: each group runs on
  cached prefixes on its actor (`run_with_cached_prefixes`: one recording pass per group, then only what
  follows each patched module, stacked where the local run stacks). A group, not a single pass, is the unit
  because the recording pass is paid once per task; a few groups per actor keep the actors busy to the end and
  bound what a lost actor costs.
- An analysis's own work (`map`: randomization-cascade steps, attribution chunks) goes one item per task: the
  function travels as a reference (a module-level function), the item as data, and the actor calls it on its
  replica.
- One task per actor at a time. An actor that dies (killed, its node lost) fails its task; the task is queued
  again, a new actor takes the dead one's place, and the results are those of a run without the fault.
"""

from __future__ import annotations

import logging
import math
import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import ray
import ray.exceptions
import torch

from auditor.config import ExecutorSpec
from auditor.engine.capture import Capture, CapturePart, finish_capture, record_batches
from auditor.engine.executor import LocalExecutor, step_counts
from auditor.engine.passes import PatchedPass
from auditor.engine.prefix import PrefixRun, run_with_cached_prefixes
from auditor.engine.prefix_plan import PassRoute
from auditor.engine.trace import Traced
from auditor.engine.shards import merge_parts
from auditor.errors import AuditorError
from auditor.progress import Progress, SilentProgress
from auditor.subject import Subject
from auditor.subject.adapters import ModelAdapter
from auditor.walk.needs import Needs
from auditor.walk.patch import Patch, patch_many
from auditor.walk.tree import ModuleTree

log = logging.getLogger("auditor")
T = TypeVar("T")
R = TypeVar("R")

GROUPS_PER_ACTOR = 4
"""Patched passes go in about this many groups per actor (each group one task with one recording pass)."""
READY_SECONDS = 300.0
"""How long the actors may take to start (load their replica) before the cluster is reported unable to host
them."""
ACTOR_PREFIX = "auditor-replica"
"""Actors are named `auditor-replica-<audit>-<n>` (in the dashboard, `ray.util.list_named_actors()`)."""


class ClusterError(AuditorError):
    """The Ray cluster cannot be reached, or cannot host the actors the audit asks for."""


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}" if text else type(err).__name__


REACH_SECONDS = 5.0
"""A cluster address that accepts no TCP connection within this time is reported unreachable (Ray itself
retries for minutes)."""


def _check_reachable(address: str) -> None:
    """Fails fast on a `host:port` or `ray://host:port` nobody listens on."""
    import socket

    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return  # "auto", or a form Ray resolves itself
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_SECONDS):
            pass
    except OSError as err:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {_one_line(err)}") from None


def connect(address: str | None) -> bool:
    """Connects this process to the Ray cluster at `address` (None: RAY_ADDRESS, else a cluster started here on
    127.0.0.1); True when this call started the connection (and so `close` ends it). A process already
    connected keeps its connection."""
    if ray.is_initialized():
        return False
    target = address or os.environ.get("RAY_ADDRESS")
    options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if target is None:
        options.update(include_dashboard=False, _node_ip_address="127.0.0.1")
    else:
        _check_reachable(target)
    try:
        ray.init(address=target, **options)
    except Exception as err:  # ConnectionError, TimeoutError, RuntimeError, ValueError: all mean "not reachable"
        where = f"at {target}" if target else "started here"
        raise ClusterError(f"cannot reach the Ray cluster {where}: {_one_line(err)}") from None
    return True


class Replica:
    """One actor: one replica of the subject's model, running shards of the capture and groups of passes."""

    def __init__(self, subject: Subject, threads: int) -> None:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(threads)
        self._limits = threadpool_limits(limits=threads, user_api="blas")  # held for the actor's life
        self.subject = subject
        self.tree = ModuleTree(subject.model)

    def ready(self) -> int:
        return os.getpid()

    def _target(self, other: tuple[Any, Any, Any] | None) -> Subject:
        """The replica's subject, or the same model fed other data (a probe set): `other` is its data,
        labels and data spec."""
        if other is None:
            return self.subject
        import dataclasses

        data, labels, spec = other
        own = self.subject
        adapter = ModelAdapter(own.loaded, data, spec, own.device)
        return dataclasses.replace(own, data=data, adapter=adapter, labels=labels, _encoded={})

    def capture(self, needs: Needs, starts: list[int], batch_size: int, patches: Mapping[str, Patch],
                other: tuple[Any, Any, Any] | None) -> CapturePart:
        subject = self._target(other)
        batches = (subject.batch_at(start, batch_size) for start in starts)
        with patch_many(subject.model, patches):
            return record_batches(subject, self.tree, needs, batches, total=len(starts), progress=SilentProgress())

    def patched(self, passes: list[PatchedPass], traced: Mapping[str, Traced], seconds: Mapping[str, float],
                batch_size: int, cache_bytes: int, stack: int) -> PrefixRun:
        return run_with_cached_prefixes(self.subject, self.tree, passes, traced=traced, batch_size=batch_size,
                                        budget_bytes=cache_bytes, progress=SilentProgress(), seconds=seconds,
                                        stack=stack)

    def scores(self, passes: list[PatchedPass], batch_size: int) -> list[torch.Tensor]:
        return LocalExecutor(self.subject, self.tree, batch_size=batch_size, progress=SilentProgress()).scores(passes)

    def map(self, fn: Callable[[Subject, Any], Any], item: Any) -> Any:
        """One item of an executor `map`, on this replica (which `fn` leaves as it found it)."""
        return fn(self.subject, item)


def shard_starts(n_samples: int, batch_size: int, shards: int) -> list[list[int]]:
    """The batches' first samples in `shards` contiguous runs of near-equal length, in data order."""
    starts = list(range(0, n_samples, batch_size))
    shards = max(1, min(shards, len(starts)))
    size, extra = divmod(len(starts), shards)
    runs, at = [], 0
    for i in range(shards):
        length = size + (1 if i < extra else 0)
        runs.append(starts[at:at + length])
        at += length
    return [r for r in runs if r]


def pass_groups(n_passes: int, actors: int, stack: int) -> list[range]:
    """Contiguous groups of passes, about `GROUPS_PER_ACTOR` per actor, each a whole number of stacks long
    (so a group is not cut below what one stacked forward holds)."""
    if n_passes == 0:
        return []
    size = math.ceil(n_passes / (actors * GROUPS_PER_ACTOR))
    size = max(stack, math.ceil(size / stack) * stack)
    return [range(i, min(i + size, n_passes)) for i in range(0, n_passes, size)]


class RayExecutor:
    """Runs the capture's shards and the patched passes on `spec.actors` actors; progress counts the forward
    batches of every finished task, whichever actor ran it."""

    def __init__(self, subject: Subject, tree: ModuleTree, *, batch_size: int, progress: Progress,
                 spec: ExecutorSpec) -> None:
        self.subject = subject
        self.tree = tree
        self.batch_size = batch_size
        self.progress = progress
        self.spec = spec
        self.local = LocalExecutor(subject, tree, batch_size=batch_size, progress=progress)
        self.restarts = 0
        """Actors started in place of ones that died."""
        self.tasks = 0
        """Tasks finished (shards of captures, groups of passes)."""
        self._owns_connection = connect(spec.address)
        self._tag = f"{ACTOR_PREFIX}-{uuid.uuid4().hex[:8]}"
        self._started = 0
        self._threads = max(1, int(spec.cpus_per_actor))
        self._actor_class = ray.remote(Replica)
        try:
            self._subject_ref = ray.put(subject)
            self.actors = [self._start_actor() for _ in range(spec.actors)]
            self._wait_ready(self.actors)
        except BaseException:
            self.close()
            raise

    # --- actors ------------------------------------------------------------------------------------------

    def _start_actor(self) -> Any:
        self._started += 1
        return self._actor_class.options(
            name=f"{self._tag}-{self._started}", num_cpus=self.spec.cpus_per_actor,
            num_gpus=self.spec.gpus_per_actor, max_restarts=0,
        ).remote(self._subject_ref, self._threads)

    def _wait_ready(self, actors: Sequence[Any]) -> None:
        refs = [a.ready.remote() for a in actors]
        done, waiting = ray.wait(refs, num_returns=len(refs), timeout=READY_SECONDS)
        if waiting:
            raise ClusterError(
                f"the Ray cluster did not start {len(waiting)} of {len(refs)} actors with "
                f"{self.spec.cpus_per_actor:g} CPUs and {self.spec.gpus_per_actor:g} GPUs each within "
                f"{READY_SECONDS:.0f} s: fewer actors, or fewer CPUs/GPUs per actor ([executor])")
        try:
            ray.get(done)
        except ray.exceptions.RayError as err:
            raise ClusterError(f"an actor could not load the model: {_one_line(err)}") from None

    def _replace(self, dead: Any) -> Any:
        """A new actor in place of `dead` (which is killed, should it still run)."""
        try:
            ray.kill(dead)
        except Exception:  # already gone
            pass
        fresh = self._start_actor()
        self.actors = [fresh if a is dead else a for a in self.actors]
        self.restarts += 1
        log.warning("a Ray actor died; its task runs again on a new actor (%d so far)", self.restarts)
        return fresh

    def close(self) -> None:
        for actor in getattr(self, "actors", []):
            try:
                ray.kill(actor)
            except Exception:
                pass
        self.actors = []
        if self._owns_connection and ray.is_initialized():
            ray.shutdown()
            self._owns_connection = False

    # --- tasks -------------------------------------------------------------------------------------------

    def _run(self, calls: Sequence[Callable[[Any], Any]], steps: Sequence[int], description: str) -> list[Any]:
        """Runs each call (actor -> ObjectRef) on some actor, one at a time per actor; results in order. A task
        whose actor died runs again on a new actor, up to `spec.task_retries` times."""
        results: list[Any] = [None] * len(calls)
        queue = deque(range(len(calls)))
        tries = [0] * len(calls)
        idle = deque(self.actors)
        pending: dict[Any, tuple[int, Any]] = {}
        while queue or pending:
            while queue and idle:
                i = queue.popleft()
                actor = idle.popleft()
                pending[calls[i](actor)] = (i, actor)
            ready, _ = ray.wait(list(pending), num_returns=1)
            i, actor = pending.pop(ready[0])
            try:
                results[i] = ray.get(ready[0])
            except ray.exceptions.RayActorError as err:
                tries[i] += 1
                if tries[i] > self.spec.task_retries:
                    raise ClusterError(f"{description}: a task failed on {tries[i]} actors in turn (they died): "
                                       f"{_one_line(err)}") from None
                idle.append(self._replace(actor))
                queue.appendleft(i)
                continue
            except ray.exceptions.RayTaskError as err:
                cause = getattr(err, "cause", None)
                if isinstance(cause, Exception):
                    raise cause from None  # the model's or the data's error, as the local run raises it
                raise
            self.tasks += 1
            idle.append(actor)
            self.progress.advance(steps[i], description=description)
        return results

    # --- the Executor protocol ---------------------------------------------------------------------------

    def capture(self, needs: Needs, *, subject: Subject | None = None, patches: Mapping[str, Patch] | None = None,
                label: str = "") -> Capture:
        other = None
        if subject is not None and subject is not self.subject:
            if subject.loaded is not self.subject.loaded:  # another model: not what the actors hold
                return self.local.capture(needs, subject=subject, patches=patches, label=label)
            other = ray.put((subject.data, subject.labels, subject.adapter.spec))
        target = subject or self.subject
        started = time.perf_counter()
        shards = shard_starts(len(target), self.batch_size, len(self.actors))
        needs_ref, patches_ref = ray.put(needs), ray.put(dict(patches or {}))
        calls = [lambda actor, starts=starts: actor.capture.remote(needs_ref, starts, self.batch_size, patches_ref,
                                                                   other) for starts in shards]
        parts = self._run(calls, [len(s) for s in shards], label or "capturing modules")
        return finish_capture(merge_parts(parts), needs, task=target.task, seconds=time.perf_counter() - started)

    def scores(self, passes: Sequence[PatchedPass]) -> list[torch.Tensor]:
        groups = pass_groups(len(passes), len(self.actors), 1)
        n_batches = self.subject.n_batches(self.batch_size)
        calls = [lambda actor, g=g: actor.scores.remote([passes[i] for i in g], self.batch_size) for g in groups]
        results = self._run(calls, [len(g) * n_batches for g in groups], "patched passes")
        return [s for part in results for s in part]

    def patched_run(self, passes: Sequence[PatchedPass], *, traced: Mapping[str, Traced],
                    seconds: Mapping[str, float], cache_bytes: int, stack: int) -> PrefixRun:
        started = time.perf_counter()
        groups = pass_groups(len(passes), len(self.actors), stack)
        n_batches = self.subject.n_batches(self.batch_size)
        traced_ref, seconds_ref = ray.put(dict(traced)), ray.put(dict(seconds))
        calls = [lambda actor, g=g: actor.patched.remote([passes[i] for i in g], traced_ref, seconds_ref,
                                                         self.batch_size, cache_bytes, stack) for g in groups]
        runs: list[PrefixRun] = self._run(calls, [len(g) * n_batches for g in groups], "patched passes")
        return merge_runs(runs, budget_bytes=cache_bytes, seconds=time.perf_counter() - started)

    def map(self, fn: Callable[[Subject, T], R], items: Sequence[T], *, description: str,
            steps: Sequence[int] | None = None) -> list[R]:
        """One task per item, on whichever actor is free; a task whose actor died runs again on a new one."""
        counts = step_counts(items, steps)
        calls = [lambda actor, item=item: actor.map.remote(fn, item) for item in items]
        return self._run(calls, counts, description)


def merge_runs(runs: Sequence[PrefixRun], *, budget_bytes: int, seconds: float) -> PrefixRun:
    """The groups' runs as one: scores and routes in pass order; what each actor cached (the largest, by
    module); the recording and pass times summed over the actors (work, not wall time: that is `seconds`)."""
    cached: dict[str, int] = {}
    for run in runs:
        for name, size in run.cached.items():
            cached[name] = max(cached.get(name, 0), size)
    routes: list[PassRoute] = [route for run in runs for route in run.routes]
    return PrefixRun(
        scores=[s for run in runs for s in run.scores], routes=routes, cached=cached, budget_bytes=budget_bytes,
        evicted=list(dict.fromkeys(name for run in runs for name in run.evicted)),
        clean_scores=next((run.clean_scores for run in runs if run.clean_scores is not None), None),
        seconds=seconds, record_seconds=sum(run.record_seconds for run in runs),
        pass_seconds=[s for run in runs for s in run.pass_seconds], stacked=sum(run.stacked for run in runs),
        forwards=sum(run.forwards for run in runs))


__all__ = ["ClusterError", "RayExecutor", "Replica", "connect", "merge_runs", "pass_groups", "shard_starts"]
