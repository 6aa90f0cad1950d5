"""Attention heads of a causal language model, classified by what they measurably do on repeated random tokens:
previous-token heads, duplicate-token heads and induction heads (prefix-matching and copying; Olsson et al.,
2022), with the earlier previous-token head each induction head reads (measured by ablation on the probe)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from auditor.analyses.heads.signatures import Signatures, measure
from auditor.engine.analysis import Analysis, AuditContext, PlanContext
from auditor.kit.lm import lm_layout
from auditor.schema.findings import Finding
from auditor.schema.report import Cost, Section, Table
from auditor.subject import Task
from auditor.analyses.heads.findings import FINDINGS
from auditor.schema.findings import Findings


class HeadsParams(BaseModel):
    """`[analyses.heads]`: the probe and the thresholds that name a head's kind."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    length: int = Field(20, ge=4)
    """Random tokens in each half of the probe."""
    samples: int = Field(32, ge=2)
    previous_token: float = Field(0.4, gt=0.0, le=1.0)
    """A previous-token head puts at least this share of its attention on the previous token."""
    duplicate_token: float = Field(0.4, gt=0.0, le=1.0)
    induction: float = Field(0.4, gt=0.0, le=1.0)
    """An induction head puts at least this share on the token after the earlier copy of the current one..."""
    copying: float = Field(0.5, gt=0.0, le=1.0)
    """... and its own output ranks the attended token in the top 5% of the vocabulary at least this often."""
    reads_drop: float = Field(0.5, gt=0.0, le=1.0)
    """An induction head reads an earlier head when ablating that head removes at least this share of its
    prefix-matching score."""


def _fmt(names: list[str], values: dict[str, float]) -> str:
    return ", ".join(f"{n} ({values[n]:.2f})" for n in names)


class AttentionHeads(Analysis):
    """Previous-token, duplicate-token and induction heads, from their attention on repeated random tokens."""

    id: ClassVar[str] = "heads"
    title: ClassVar[str] = "Attention heads"
    findings: ClassVar[Findings] = FINDINGS
    modalities = frozenset({"text"})
    tasks: ClassVar[frozenset[Task]] = frozenset({"causal_lm"})
    params_type: ClassVar[type[BaseModel]] = HeadsParams
    cost_note: ClassVar[str] = ("one forward on a small probe of repeated random tokens, plus one per earlier "
                                "previous-token head for each induction head; no pass over the audit data")

    def __init__(self, params: HeadsParams | None = None) -> None:
        self.params: HeadsParams = params or HeadsParams()

    def not_applicable(self, ctx: PlanContext) -> str | None:
        reason = super().not_applicable(ctx)
        if reason is None:
            try:
                lm_layout(ctx.subject.model)
            except ValueError as err:
                return f"the model's attention heads cannot be read: {err}"
        return reason

    def cost(self, ctx: PlanContext) -> Cost:
        share = self.params.samples / max(1, len(ctx.subject))
        return Cost(forwards=round(share, 3), note=self.cost_note)

    def run(self, ctx: AuditContext) -> Section:
        p = self.params
        model = ctx.subject.model
        layout = lm_layout(model)
        sig = measure(model, layout, ctx.subject.loaded.tokenizer, length=p.length, samples=p.samples,
                      seed=ctx.config.seed, previous_threshold=p.previous_token, induction_threshold=p.induction)
        names = layout.head_names()
        previous = sorted((n for n in names if sig.previous_token[n] >= p.previous_token),
                          key=lambda n: -sig.previous_token[n])
        duplicate = sorted((n for n in names if sig.duplicate_token[n] >= p.duplicate_token),
                           key=lambda n: -sig.duplicate_token[n])
        induction = sorted((n for n in names if sig.induction[n] >= p.induction and sig.copying[n] >= p.copying),
                           key=lambda n: -sig.induction[n])
        reads = _reads(sig, induction, p.reads_drop)
        module_metrics: dict[str, dict[str, float]] = {
            n: {"previous_token_score": sig.previous_token[n], "duplicate_token_score": sig.duplicate_token[n],
                "induction_score": sig.induction[n], "copying_score": sig.copying[n]} for n in names}
        for head, read in reads.items():
            module_metrics[head]["reads_previous_token_head_drop"] = read[1]
        findings = _findings(sig, previous, duplicate, induction, reads, p)
        rows = [[n, round(sig.previous_token[n], 3), round(sig.duplicate_token[n], 3), round(sig.induction[n], 3),
                 round(sig.copying[n], 3), _kind(n, previous, duplicate, induction), reads.get(n, ("", 0.0))[0]]
                for n in names]
        table = Table(id="head_signatures", title="Attention-head signatures on repeated random tokens",
                      columns=["head", "previous-token", "duplicate-token", "prefix-matching", "copying", "kind",
                               "reads"], rows=rows,
                      caption=f"{sig.samples} probes of {sig.length} random tokens repeated once; attention shares "
                              "averaged over the queries; copying: share of queries whose attended token the head's "
                              "own output ranks in the top 5% of the vocabulary (chance 0.05).")
        summary = (f"{len(induction)} induction, {len(previous)} previous-token and {len(duplicate)} duplicate-token "
                   f"heads among {len(names)} heads ({len(layout.layers)} layers x {layout.heads}).")
        metrics = {"induction_heads": float(len(induction)), "previous_token_heads": float(len(previous)),
                   "duplicate_token_heads": float(len(duplicate)),
                   "max_induction_score": max(sig.induction.values(), default=0.0)}
        return Section(id=self.id, title=self.title, summary=summary, metrics=metrics, tables=[table],
                       findings=findings, module_metrics=module_metrics,
                       details={"induction": induction, "previous_token": previous, "duplicate_token": duplicate,
                                "reads": {k: v[0] for k, v in reads.items()}})


def _reads(sig: Signatures, induction: list[str], share: float) -> dict[str, tuple[str, float]]:
    """Per induction head, the earlier head whose ablation lowers its prefix-matching score most, when it
    removes at least `share` of it: (that head, the drop)."""
    out = {}
    for head in induction:
        drops = {e: sig.induction[head] - after for e, after in sig.reads.get(head, {}).items()}
        if drops:
            best = max(drops, key=lambda e: drops[e])
            if drops[best] >= share * sig.induction[head]:
                out[head] = (best, drops[best])
    return out


def _kind(name: str, previous: list[str], duplicate: list[str], induction: list[str]) -> str:
    kinds = [k for k, group in (("induction", induction), ("previous-token", previous),
                                ("duplicate-token", duplicate)) if name in group]
    return ", ".join(kinds)


def _findings(sig: Signatures, previous: list[str], duplicate: list[str], induction: list[str],
              reads: dict[str, tuple[str, float]], p: HeadsParams) -> list[Finding]:
    findings = []
    if induction:
        read_words = "; ".join(f"{h} reads the previous-token head {e} (ablating it lowers its prefix-matching "
                               f"score from {sig.induction[h]:.2f} to {sig.induction[h] - d:.2f})"
                               for h, (e, d) in reads.items())
        findings.append(FINDINGS.finding(
            "induction_heads", module=induction[0],
            message=(f"Induction heads: {_fmt(induction, sig.induction)} attend to the token after an earlier copy "
                     f"of the current token and copy it (copying {', '.join(f'{sig.copying[h]:.2f}' for h in induction)})"
                     f"{'; ' + read_words if read_words else ''}. They let the model continue a sequence it has "
                     "seen earlier in its context."),
            evidence={"heads": ", ".join(induction), "top_prefix_matching": round(sig.induction[induction[0]], 4),
                      "top_copying": round(sig.copying[induction[0]], 4), "threshold": p.induction,
                      "reads": ", ".join(f"{h}<-{e}" for h, (e, _) in reads.items())}))
    if previous:
        findings.append(FINDINGS.finding(
            "previous_token_heads", module=previous[0],
            message=f"Previous-token heads: {_fmt(previous, sig.previous_token)} attend mostly to the previous token.",
            evidence={"heads": ", ".join(previous), "top_score": round(sig.previous_token[previous[0]], 4),
                      "threshold": p.previous_token}))
    if duplicate:
        findings.append(FINDINGS.finding(
            "duplicate_token_heads", module=duplicate[0],
            message=f"Duplicate-token heads: {_fmt(duplicate, sig.duplicate_token)} attend to an earlier copy of "
                    "the current token.",
            evidence={"heads": ", ".join(duplicate), "top_score": round(sig.duplicate_token[duplicate[0]], 4),
                      "threshold": p.duplicate_token}))
    return findings
