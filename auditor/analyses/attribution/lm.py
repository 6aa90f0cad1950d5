"""Token attributions for a causal language model's next-token predictions: Layer Integrated Gradients over the
input embeddings (`auditor.kit.captum_lm`), target = the log-probability of the real next token at the chosen
position; per text its most confident correct prediction and its most wrong one; each shown as its prefix's
tokens shaded by attribution; `attribution.far_token` when one token far back carries a dominant share of a
prediction."""


from __future__ import annotations

import math
from typing import Any

import torch

from auditor.engine.analysis import Analysis, AuditContext
from auditor.kit.captum import internal_batch_size
from auditor.kit.captum_lm import (Prediction, PredictionChunk, choose_predictions, input_embeddings,
                                   prediction_chunk, texts_to_explain)
from auditor.schema.findings import Finding
from auditor.schema.report import Section, Table
from auditor.subject.inputs import TextInputs
from auditor.analyses.attribution.common import convergence
from auditor.analyses.attribution.findings import FINDINGS
from auditor.analyses.attribution.params import AttributionParams


class LMAttribution:
    def __init__(self, params: AttributionParams, ctx: AuditContext) -> None:
        self.p, self.ctx, self.subject = params, ctx, ctx.subject
        self.keys = list(self.subject.inputs.first)
        name = input_embeddings(self.subject)
        assert name is not None  # not_applicable
        self.layer_name = name
        inputs = self.subject.inputs
        assert isinstance(inputs, TextInputs)
        self.inputs = inputs

    def run(self, analysis: Analysis) -> Section:
        p, ctx = self.p, self.ctx
        texts = texts_to_explain(self.subject, p.lm_texts, seed=ctx.config.seed)
        predictions = choose_predictions(self.subject, texts, batch_size=ctx.config.batch_size)
        if not predictions:
            raise ValueError("the audit texts hold no audited tokens to explain")
        internal = internal_batch_size(self.subject, p.memory_budget_mb)
        size = ctx.config.batch_size
        chunks = [PredictionChunk(tuple(q.text for q in part), tuple(q.position for q in part), tuple(self.keys),
                                  self.layer_name, p.n_steps, internal)
                  for part in (predictions[i:i + size] for i in range(0, len(predictions), size))]
        rows: list[torch.Tensor] = []
        deltas, gains = [], []
        for per_token, delta, gain in ctx.executor.map(prediction_chunk, chunks, description="integrated gradients"):
            rows += list(per_token)
            deltas.append(delta)
            gains.append(gain)
        metrics, findings = convergence(torch.cat(deltas), torch.cat(gains), p.convergence_tolerance)
        metrics["ig_samples"] = float(len(predictions))
        metrics["ig_internal_batch_size"] = float(internal)
        shown = [self._shown(q, row) for q, row in zip(predictions, rows, strict=True)]
        far = [s for s in shown if s["dominant_share"] >= p.dominant_share and s["dominant_distance"] >= p.far_tokens]
        metrics["far_token_share"] = len(far) / len(shown)
        findings += self._far_finding(far, len(shown))
        details: dict[str, Any] = {
            "texts": shown[:p.lm_shown], "predictions": len(predictions), "layer": self.layer_name,
            "baseline": "the pad token (BOS/EOS where it is the pad) at every position, sequence markers kept",
            "texts_caption": "Each prediction's prefix, token by token: green tokens raise the log-probability of "
                             "the real next token (after the arrow), red ones lower it; the deeper the shade, the "
                             "larger the share of the prefix's largest token. A causal model reads only the prefix."}
        summary = (f"Layer Integrated Gradients over {self.layer_name} ({p.n_steps} steps; baseline: the pad token at "
                   f"every position) for {len(predictions)} next-token predictions of {len(texts)} texts: per text "
                   "the audited position where the model is most confident and right, and the one where it is most "
                   "wrong. Target: the log-probability of the real next token at that position; a causal model "
                   "reads only the prefix, so attributions lie on it.")
        return Section(id=analysis.id, title=analysis.title, summary=summary, metrics=metrics, findings=findings,
                       tables=[self._table(shown)], details=details)

    def _token(self, token_id: int) -> str:
        """A token as text, its leading space dropped (the report separates tokens itself)."""
        text = self.inputs.text_of(self.inputs.tokens([token_id]))
        return text.strip() or repr(text)

    def _shown(self, q: Prediction, row: torch.Tensor) -> dict[str, Any]:
        """One prediction as the report shows it: its prefix's tokens with their attributions."""
        ids = self.subject.encode_samples([q.text])[self.inputs.key][0, :q.position + 1].tolist()
        values = [float(v) for v in row[:q.position + 1]]
        markers = set(self.subject.adapter.marker_ids())
        content = [k for k, t in enumerate(ids) if t not in markers] or list(range(len(ids)))
        magnitude = [abs(values[k]) for k in content]
        total = sum(magnitude) or 1.0
        top = content[max(range(len(content)), key=lambda k: magnitude[k])]
        bound = max(magnitude) or 1.0
        actual, predicted = self._token(q.actual), self._token(q.predicted)
        return {"index": q.text, "position": q.position, "kind": q.kind, "log_p": round(q.log_p, 6),
                "target": actual, "predicted": predicted, "correct": q.actual == q.predicted,
                "label": f"#{q.text} · position {q.position} · "
                         f"{'most confident' if q.kind == 'confident' else 'most wrong'}"
                         f" · next token {actual!r} (p = {math.exp(q.log_p):.2f})"
                         + ("" if q.actual == q.predicted else f" · predicted {predicted!r}"),
                "total": round(sum(values), 6), "dominant_position": top, "dominant_token": self._token(ids[top]),
                "dominant_share": abs(values[top]) / total, "dominant_distance": q.position - top,
                "words": [[self._token(t), round(v, 6), round(v / bound, 4)] for t, v in zip(ids, values, strict=True)]}

    def _far_finding(self, far: list[dict[str, Any]], total: int) -> list[Finding]:
        if not far:
            return []
        p = self.p
        example = max(far, key=lambda s: s["dominant_share"])
        return [FINDINGS.finding(
            "far_token",
            message=(f"In {len(far)} of {total} explained predictions one token at least {p.far_tokens} positions back "
                     f"carries {p.dominant_share:.0%} or more of the attribution: the model reads far context, "
                     f"as copying from an earlier occurrence does (e.g. text #{example['index']}: "
                     f"{example['dominant_token']!r}, {example['dominant_distance']} tokens back, "
                     f"{example['dominant_share']:.0%} of the attribution for {example['target']!r})."),
            evidence={"predictions": len(far), "explained": total, "dominant_share": p.dominant_share,
                      "far_tokens": p.far_tokens, "example_text": example["index"],
                      "example_distance": example["dominant_distance"],
                      "example_share": round(example["dominant_share"], 4)})]

    def _table(self, shown: list[dict[str, Any]]) -> Table:
        rows = [[s["index"], s["position"], s["kind"], s["target"], s["predicted"], round(math.exp(s["log_p"]), 4), s["dominant_token"], s["dominant_distance"], round(s["dominant_share"], 4),
            s["total"]] for s in shown]
        return Table(id="attribution.predictions", title="Explained next-token predictions",
                     columns=["text", "position", "chosen as", "next token", "top-1", "p(next token)",
                              "top token", "tokens back", "its share of |attribution|", "sum of attributions"],
                     rows=rows,
                     caption="Per text its most confident correct prediction and its most wrong one. 'top token': "
                             "the prefix token with the largest |attribution|, how far before the predicted position "
                             "it is (0: the current token), and its share of the prefix's total |attribution|. The "
                             "sum of attributions approximates log p(next token) − its value from the baseline.")
