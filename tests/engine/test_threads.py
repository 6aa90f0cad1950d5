"""The threads an audit runs on: asked for, OMP_NUM_THREADS, or the cores (fewer where one batch measured as
fast on fewer); said in the report, and the caller's own setting restored."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

import auditor
from auditor.engine import threads as threads_module
from auditor.engine.threads import choose_threads, torch_threads


@pytest.fixture()
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two cores, nothing else runnable on them (whatever else runs beside the test)."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads_module, "available_cores", lambda: 2)
    monkeypatch.setattr(threads_module, "other_runnable", lambda: 0)


def test_an_asked_for_count_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    choice = choose_threads(3)
    assert (choice.threads, choice.source) == (3, "option")
    assert choose_threads(None).threads == 1 and choose_threads(None).source == "OMP_NUM_THREADS"


def test_without_a_forward_it_takes_the_cores(two_cores: None) -> None:
    choice = choose_threads(None)
    assert (choice.threads, choice.source) == (2, "cores")


def _forward_taking(seconds: dict[int, float]):  # type: ignore[no-untyped-def]
    """A 'forward' whose duration depends on torch's thread count, known by construction."""
    def forward() -> None:
        time.sleep(seconds[torch.get_num_threads()])
    return forward


def test_one_thread_when_one_batch_is_as_fast_on_one(two_cores: None) -> None:
    before = torch.get_num_threads()
    choice = choose_threads(None, _forward_taking({1: 0.01, 2: 0.03}))
    assert (choice.threads, choice.source) == (1, "measured")
    assert choice.batch_seconds[1] < choice.batch_seconds[2] and "one thread" in choice.describe()
    assert torch.get_num_threads() == before  # choosing changes nothing; torch_threads applies it


def test_all_cores_when_they_are_clearly_faster(two_cores: None) -> None:
    choice = choose_threads(None, _forward_taking({1: 0.05, 2: 0.01}))
    assert (choice.threads, choice.source) == (2, "measured")


def test_the_cores_other_threads_keep_busy_are_left_to_them(two_cores: None,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # a 2-thread job beside the audit: one batch would still run faster on both cores, the audit would not
    monkeypatch.setattr(threads_module, "other_runnable", lambda: 2)
    choice = choose_threads(None, _forward_taking({1: 0.05, 2: 0.01}))
    assert choice.threads == 1 and "2 other threads runnable" in choice.reason and not choice.batch_seconds
    monkeypatch.setattr(threads_module, "available_cores", lambda: 8)
    assert choose_threads(None, _forward_taking({1: 0.05, 8: 0.01})).threads == 6


def test_the_running_count_is_read_from_the_machine() -> None:
    busy = threads_module.other_runnable(samples=3, interval=0.0)
    assert busy is None or busy >= 0  # None off Linux


def test_torch_threads_applies_and_restores(two_cores: None) -> None:
    before = torch.get_num_threads()
    with torch_threads(choose_threads(1)):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(choose_threads(1)):
        raise RuntimeError("the model failed")
    assert torch.get_num_threads() == before


def test_the_report_says_how_many_threads_and_why() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    x = torch.arange(48, dtype=torch.float32).reshape(12, 4) / 48
    y = torch.tensor([0, 1, 2] * 4)
    before = torch.get_num_threads()
    report = auditor.audit(model, (x, y), analyses=["inventory"], threads=1)
    assert report.metadata.threads == 1 and report.metadata.threads_reason.startswith("1 of ")
    assert "asked for" in report.metadata.threads_reason and torch.get_num_threads() == before
    assert report.metadata.config["threads"] == 1


def test_the_command_line_takes_threads_and_the_plan_says_them(run_cli, tiny_cnn_npz, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("run", "--model", "tests.models:build_tiny_cnn", "--data", tiny_cnn_npz, "--out",
                     tmp_path / "out", "--plan", "--analyses", "inventory", "--threads", "1")
    assert result.exit_code == 0, result.stderr
    text = " ".join(result.stdout.split())  # however the console wraps it
    assert "timed on 1 of " in text and "asked for" in text
    bad = run_cli("run", "--model", "tests.models:build_tiny_cnn", "--data", tiny_cnn_npz, "--out",
                  tmp_path / "out", "--plan", "--threads", "0")
    assert bad.exit_code == 2
