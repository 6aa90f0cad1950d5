"""`auditor demo --only tiny_lm`: the tiny GPT-2 trains (or loads from cache), its audit runs in under a minute,
and what it says holds on the model: the repeated halves are predicted, the first halves are not, the layer-1
induction head and the layer-0 previous-token head it reads are found, the atlas says so, and ablating the
induction head costs the repeats only; whether a text repeats itself is read from the layer of the induction head
on."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_the_tiny_lm_demo_audits_its_in_context_copying(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from auditor.cli import app

    from auditor.demo import tiny_lm
    from auditor.paths import cache_dir

    tiny_lm.prepare(cache_dir())  # trains once (minutes), then cached: not part of the audit's time
    started = time.perf_counter()
    result = CliRunner().invoke(app, ["demo", "--only", "tiny_lm", "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 0, result.output
    assert time.perf_counter() - started < 120  # the audit itself: about 20 s on two shared cores
    audit = json.loads((tmp_path / "tiny_lm" / "audit.json").read_text())
    sections = {s["id"]: s for s in audit["sections"]}
    for id in ("next_token", "lm_ablation", "lens", "heads"):
        assert sections[id]["error"] is None, id
    rows = sections["next_token"]["tables"][0]["rows"]  # [positions, tokens, loss, top-1]
    first_half = [r for r in rows if int(r[0].split("-")[1]) <= tiny_lm.AUDIT_HALF]
    second_half = [r for r in rows if int(r[0].split("-")[0]) > tiny_lm.AUDIT_HALF]
    # a first half is random words (loss near log 100 = 4.6); a second half repeats it
    assert min(r[2] for r in first_half) > 4.0 and max(r[2] for r in second_half) < 3.5
    in_context = next(f for f in audit["findings"] if f["id"] == "lm_ablation.in_context")
    metrics = sections["lm_ablation"]["module_metrics"][in_context["module"]]
    assert metrics["loss_increase_repeated"] > 5 * max(metrics["loss_increase_first"], 0.0)
    assert sections["lens"]["module_metrics"]["transformer.h.1"]["lens_top1_agreement"] == 1.0
    _assert_the_induction_circuit(audit)
    # whether a text repeats itself is read from the residual stream after the induction layer, not before it,
    # and not from the same network re-initialized
    probes = sections["probes"]["module_metrics"]
    assert probes["transformer.h.1"]["probe_accuracy"] >= 0.85
    assert probes["transformer.h.1"]["probe_random_init_accuracy"] <= 0.7
    for before in ("transformer.wte", "transformer.h.0"):
        assert probes[before]["probe_accuracy"] <= probes[before]["probe_permutation_accuracy"] + 0.05, before


def _assert_the_induction_circuit(audit: dict) -> None:  # type: ignore[type-arg]
    """`heads` finds an induction head in layer 1 reading a previous-token head in layer 0; the layer-1 attention's
    card is tagged with it; ablating the induction head raises the loss on repeated tokens, not on first ones."""
    from auditor.schema.report import AuditReport

    heads = next(s for s in audit["sections"] if s["id"] == "heads")
    induction, reads = heads["details"]["induction"], heads["details"]["reads"]
    assert induction and all(h.startswith("transformer.h.1.attn#") for h in induction)
    head = induction[0]
    previous = reads[head]
    assert previous.startswith("transformer.h.0.attn#") and previous in heads["details"]["previous_token"]
    report = AuditReport.model_validate(audit)
    card = report.card("transformer.h.1.attn")
    assert "induction head" in card.tags
    clause = next(c for c in card.clauses if c.tag == "induction head")
    assert head in clause.text and "induction head" in clause.text and f"previous-token head {previous}" in clause.text
    assert len([c for c in card.clauses if c.tag == "induction head"]) == 1  # all its induction heads in one clause
    assert "previous-token head" in report.card("transformer.h.0.attn").tags
    ablation = next(s for s in audit["sections"] if s["id"] == "lm_ablation")["module_metrics"][head]
    assert ablation["loss_increase_repeated"] > 0.5 and ablation["loss_increase_repeated"] > 10 * abs(
        ablation["loss_increase_first"])
