"""Next-token prediction: how well a causal language model predicts the audited tokens of the audit texts.

Loss (mean negative log-likelihood per audited token), perplexity (its exponential), top-1 accuracy, the loss
by position in the text (does the model use its context?), and the calibration of its top-1 probability
(expected calibration error, Guo et al., 2017). Audited tokens: every token of a `text` but the first, or only a
`completion`'s tokens when the data has `prompt` and `completion` columns; texts longer than `max_length`
tokens are cut, and the section says how many were.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from auditor.engine.analysis import Analysis, AuditContext
from auditor.kit.lm import audited_positions, calibration
from auditor.schema.findings import Findings, FindingSpec, Severity
from auditor.schema.report import Cost, Section, Table
from auditor.subject import Task


class NextTokenParams(BaseModel):
    """`[analyses.next_token]`: calibration bins and thresholds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    calibration_bins: int = Field(10, ge=2)
    ece_warn: float = Field(0.1, ge=0.0, le=1.0)
    position_buckets: int = Field(8, ge=1)
    """The loss by position is shown in this many equal ranges of positions."""


FINDINGS = Findings(
    "next_token",
    FindingSpec("texts_cut", Severity.INFO,
                "texts longer than `--max-tokens` were cut (how many, the longest)"),
    FindingSpec("miscalibrated", Severity.WARN,
                "the top-1 probability's expected calibration error is above `ece_warn` (0.1)"),
)
"""Every finding the next_token analysis gives (docs/findings.md is written from these)."""


class NextToken(Analysis):
    """Loss, perplexity, top-1 accuracy, loss by position and calibration of next-token prediction."""

    id: ClassVar[str] = "next_token"
    title: ClassVar[str] = "Next-token prediction"
    findings: ClassVar[Findings] = FINDINGS
    modalities = frozenset({"text"})
    tasks: ClassVar[frozenset[Task]] = frozenset({"causal_lm"})
    params_type: ClassVar[type[BaseModel]] = NextTokenParams
    cost_note: ClassVar[str] = "one forward over the audit data (the whole next-token distribution)"

    def __init__(self, params: NextTokenParams | None = None) -> None:
        self.params: NextTokenParams = params or NextTokenParams()

    def cost(self, ctx: object) -> Cost:
        return Cost(forwards=1.0, note=self.cost_note)

    def run(self, ctx: AuditContext) -> Section:
        p = self.params
        subject = ctx.subject
        losses, correct, confidence, positions = [], [], [], []
        with torch.no_grad():
            for batch in subject.batches(ctx.config.batch_size):
                logits = subject.adapter.logits(subject.model, batch.inputs).float()
                ids = batch.inputs["input_ids"]
                where = audited_positions(batch.inputs)
                log_p = torch.log_softmax(logits[:, :-1], dim=-1)
                nxt = ids[:, 1:]
                keep = where[:, :-1]
                picked = -log_p.gather(2, nxt.unsqueeze(2)).squeeze(2)
                top_p, top = log_p.max(dim=-1)
                losses.append(picked[keep].double().cpu())
                correct.append((top == nxt)[keep].cpu())
                confidence.append(top_p.exp()[keep].double().cpu())
                positions.append(torch.nonzero(keep)[:, 1].cpu() + 1)
        loss_t = torch.cat(losses).numpy()
        if loss_t.size == 0:
            raise ValueError("the audit texts hold no audited tokens (each text needs at least two tokens)")
        right = torch.cat(correct).numpy().astype(np.float64)
        conf = torch.cat(confidence).numpy()
        pos = torch.cat(positions).numpy()
        loss = float(loss_t.mean())
        accuracy = float(right.mean())
        ece, bins = calibration(conf, right, bins=p.calibration_bins)
        cut = dict(subject.adapter.cut_texts)
        metrics = {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "top1_accuracy": accuracy, "ece": ece,
                   "tokens": float(loss_t.size), "texts_cut": float(len(cut))}
        edges = np.unique(np.linspace(1, int(pos.max()) + 1, p.position_buckets + 1).round().astype(int))
        by_position = []
        for lo, hi in zip(edges[:-1], edges[1:], strict=False):
            mask = (pos >= lo) & (pos < hi)
            if mask.any():
                by_position.append([f"{lo}-{hi - 1}", int(mask.sum()), round(float(loss_t[mask].mean()), 4),
                                    round(float(right[mask].mean()), 4)])
        tables = [
            Table(id="loss_by_position", title="Loss by position",
                  columns=["positions", "tokens", "loss (nats)", "top-1"],
                  rows=by_position, caption="Position = index of the predicted token in its text (0 = the first)."),
            Table(id="calibration", title="Calibration of the top-1 probability",
                  columns=["mean confidence", "top-1 accuracy", "tokens"],
                  rows=[[round(c, 4), round(a, 4), n] for c, a, n in bins]),
        ]
        findings = []
        if cut:
            findings.append(FINDINGS.finding(
                "texts_cut",
                message=(f"{len(cut)} of {len(subject)} texts are longer than {ctx.config.data.max_length} tokens "
                         f"(the longest {max(cut.values())}) and were cut to {ctx.config.data.max_length} "
                         "(--max-tokens): their later tokens are not audited."),
                evidence={"texts_cut": len(cut), "texts": len(subject), "max_tokens": ctx.config.data.max_length,
                          "longest": max(cut.values())}))
        if ece > p.ece_warn:
            findings.append(FINDINGS.finding(
                "miscalibrated",
                message=(f"The model's top-1 probability does not match how often it is right: expected "
                         f"calibration error {ece:.3f} over {loss_t.size:,} tokens (above {p.ece_warn:g})."),
                evidence={"ece": round(ece, 4), "threshold": p.ece_warn, "tokens": int(loss_t.size)}))
        summary = (f"Loss {loss:.3f} nats per token (perplexity {math.exp(min(loss, 700.0)):.2f}), top-1 accuracy "
                   f"{accuracy:.1%} over {loss_t.size:,} audited tokens of {len(subject)} texts; texts cut to "
                   f"{ctx.config.data.max_length} tokens ({len(cut)} were longer).")
        return Section(id=self.id, title=self.title, summary=summary, metrics=metrics, tables=tables,
                       findings=findings, details={"max_tokens": ctx.config.data.max_length})
