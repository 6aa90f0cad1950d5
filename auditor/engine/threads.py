"""How many CPU threads an audit runs torch on, chosen on purpose and said in the report.

torch's default is one thread per core of the machine, which collapses when the cores are shared (a CI
runner, a second job beside it): every parallel op waits at a barrier for its slowest thread, and a thread
whose core is busy elsewhere makes them all wait. The choice, in order:

1. `threads` given (`--threads`, `threads = N` in the config, `auditor.audit(..., threads=N)`): that many;
2. `OMP_NUM_THREADS` set in the environment: that many (the user's or the CI's own limit);
3. otherwise the cores this process may run on (`os.sched_getaffinity`), or fewer: the cores left free by the
   other threads runnable on the machine when the audit starts (Linux: /proc/loadavg's running count, the
   median of a few reads), or one where one batch measured as fast on one (a small model: a pass of
   milliseconds). The busy check comes first because timing one batch cannot see the collapse: a pass of a few
   milliseconds on all cores beside a 2-thread job that spins still ran faster than on one (digits CNN: 7.6
   against 10.3 ms), while the whole audit on all cores then took 4.3x its time alone, on one 1.6x.

Inter-op threads (torch's second pool, for `torch.jit.fork`) are set to one where torch still allows it, and
the BLAS pools numpy and scipy use (threadpoolctl) get the same limit as torch: nothing is oversubscribed.
The user's thread settings come back when the audit ends.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

log = logging.getLogger("auditor")

FEWER_MARGIN = 1.05
"""Fewer threads are chosen unless more are faster by more than this factor: fewer are steadier when the
machine is shared, so a tie goes to fewer."""
LARGE_BATCH_SECONDS = 1.0
"""A batch that takes longer than this on all cores is not timed again on fewer (a large model: the cores pay)."""


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity; the machine's count where that is unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def other_runnable(samples: int = 9, interval: float = 0.005) -> int | None:
    """How many other threads are runnable on the machine now: the median over `samples` reads of the running
    count in /proc/loadavg, less the reading thread itself; None where it cannot be read (not Linux)."""
    counts = []
    for _ in range(samples):
        try:
            with open("/proc/loadavg", encoding="ascii") as f:
                running = int(f.read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return None
        counts.append(running - 1)
        time.sleep(interval)
    return max(0, int(statistics.median(counts)))


def _env_threads() -> int | None:
    raw = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value >= 1 else None


@dataclass(frozen=True)
class ThreadChoice:
    """The threads an audit runs on, and why."""

    threads: int
    source: str
    """"option" (--threads / config / API), "OMP_NUM_THREADS", "measured" or "cores"."""
    cores: int
    """The cores this process may use."""
    reason: str
    batch_seconds: dict[int, float] = field(default_factory=dict)
    """Threads -> the fastest of the timed forwards of one batch (when measured)."""

    def describe(self) -> str:
        timed = ", ".join(f"{n} thread{'s' * (n != 1)}: {s * 1000:.1f} ms" for n, s in sorted(self.batch_seconds.items()))
        return f"{self.threads} of {self.cores} cores ({self.reason}{'; one batch ' + timed if timed else ''})"


def _time_forward(forward: Callable[[], object], threads: int, repeats: int) -> float:
    torch.set_num_threads(threads)
    forward()  # warm-up: the first call at a new thread count pays for starting the threads
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        forward()
        best = min(best, time.perf_counter() - started)
    return best


def choose_threads(requested: int | None, forward: Callable[[], object] | None = None, *,
                   repeats: int = 3) -> ThreadChoice:
    """The threads to run on: `requested`, else `OMP_NUM_THREADS`, else the cores, or the cores other runnable
    threads leave free, or one where one forward of one batch (`forward`, run under `torch.no_grad`) measured no
    slower on one thread.

    Leaves torch's thread count as it found it; `torch_threads(choice)` applies the choice."""
    cores = available_cores()
    if requested is not None:
        return ThreadChoice(threads=requested, source="option", cores=cores, reason="asked for")
    env = _env_threads()
    if env is not None:
        return ThreadChoice(threads=env, source="OMP_NUM_THREADS", cores=cores, reason="OMP_NUM_THREADS")
    if cores == 1 or forward is None:
        return ThreadChoice(threads=cores, source="cores", cores=cores, reason="the cores this process may use")
    busy = other_runnable()
    if busy:
        free = max(1, cores - busy)
        if free < cores:
            return ThreadChoice(threads=free, source="measured", cores=cores,
                                reason=f"{busy} other thread{'s' * (busy != 1)} runnable on the machine at the start: "
                                       f"{free} of {cores} cores free")
    original = torch.get_num_threads()
    try:
        with torch.no_grad():
            timed = {cores: _time_forward(forward, cores, repeats)}
            if timed[cores] > LARGE_BATCH_SECONDS:
                return ThreadChoice(threads=cores, source="cores", cores=cores, batch_seconds=timed,
                                    reason="the cores this process may use (a large model)")
            timed[1] = _time_forward(forward, 1, repeats)
    except Exception:  # the model fails on its data: the audit says so later, with its own message
        log.debug("timing one batch for the thread choice failed", exc_info=True)
        return ThreadChoice(threads=cores, source="cores", cores=cores, reason="the cores this process may use")
    finally:
        torch.set_num_threads(original)
    if timed[1] <= timed[cores] * FEWER_MARGIN:
        return ThreadChoice(threads=1, source="measured", cores=cores, batch_seconds=timed,
                            reason="one batch ran as fast or faster on one thread")
    return ThreadChoice(threads=cores, source="measured", cores=cores, batch_seconds=timed,
                        reason="one batch ran faster on all cores")


_interop_set = False


def _one_interop_thread() -> None:
    """torch's inter-op pool to one thread; torch allows this only before its first parallel work."""
    global _interop_set
    if _interop_set or torch.get_num_interop_threads() == 1:
        _interop_set = True
        return
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already started (by the caller's own work): leave it
        log.debug("torch's inter-op threads are already started; left at %d", torch.get_num_interop_threads())
    _interop_set = True


@contextmanager
def torch_threads(choice: ThreadChoice) -> Iterator[None]:
    """torch (and numpy's and scipy's BLAS) on `choice.threads` threads for the block; restored after."""
    from threadpoolctl import threadpool_limits

    _one_interop_thread()
    original = torch.get_num_threads()
    torch.set_num_threads(choice.threads)
    try:
        with threadpool_limits(limits=choice.threads, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(original)


__all__ = ["ThreadChoice", "available_cores", "choose_threads", "other_runnable", "torch_threads"]
