"""Input attributions for text: Layer Integrated Gradients over the embeddings from pad tokens, words
shaded by their share, and the words that carry each class."""


from __future__ import annotations

import string
from collections import defaultdict
from typing import Any

import numpy as np
import torch

from auditor.engine.analysis import AuditContext
from auditor.kit.captum import internal_batch_size
from auditor.schema.report import Section, Table
from auditor.subject.inputs import TextInputs



from auditor.engine.analysis import Analysis
from auditor.analyses.attribution.chunks import TextChunk, sample_chunks, text_chunk
from auditor.analyses.attribution.common import convergence, embeddings_block, shown_samples
from auditor.analyses.attribution.params import AttributionParams


class TextAttribution:
    def __init__(self, params: AttributionParams, ctx: AuditContext) -> None:
        self.p, self.ctx, self.subject = params, ctx, ctx.subject
        first = next(ctx.subject.batches(ctx.config.batch_size))
        self.keys = list(first.inputs)
        name = embeddings_block(ctx)
        assert name is not None  # not_applicable
        self.layer_name = name
        self.targets = ctx.targets
        inputs = ctx.subject.inputs
        assert isinstance(inputs, TextInputs)
        self.inputs = inputs

    def _chunks(self, samples: list[int], *, n_steps: int, method: str, internal: int | None,
                gain: bool) -> list[TextChunk]:
        return [TextChunk(tuple(c), self.targets[c], tuple(self.keys), self.layer_name, n_steps, method, internal, gain)
                for c in sample_chunks(samples, self.ctx.config.batch_size)]

    def run(self, analysis: Analysis) -> Section:
        p, ctx = self.p, self.ctx
        n = len(self.subject)
        shown = shown_samples(ctx, per_class=p.examples_per_class, misclassified=p.misclassified)
        rng = np.random.default_rng(ctx.config.seed)
        ig_samples = sorted(dict.fromkeys([*shown, *(int(i) for i in rng.permutation(n)[:p.samples])]))
        ig_samples = ig_samples[:max(p.samples, len(shown))]
        internal = internal_batch_size(self.subject, p.memory_budget_mb)
        deltas, gains, scores = [], [], {}
        chunks = self._chunks(ig_samples, n_steps=p.n_steps, method="gausslegendre", internal=internal, gain=True)
        for chunk, (per_token, delta, gain) in zip(chunks, ctx.executor.map(text_chunk, chunks,
                                                                            description="integrated gradients"),
                                                   strict=True):
            assert delta is not None and gain is not None
            deltas.append(delta)
            gains.append(gain)
            for i, row in zip(chunk.samples, per_token, strict=True):
                scores[i] = row
        metrics, findings = convergence(torch.cat(deltas), torch.cat(gains), p.convergence_tolerance)
        metrics["ig_samples"] = float(len(ig_samples))
        metrics["ig_internal_batch_size"] = float(internal)
        texts = [self._sample(i, scores[i]) for i in shown if i in scores]
        ranking = self._word_ranking()
        tables = [self._words_table(ranking)]
        details = {"texts": texts, "words": ranking, "ig_samples": len(ig_samples),
                   "baseline": "pad tokens, [CLS]/[SEP] kept", "layer": self.layer_name}
        summary = (f"Layer Integrated Gradients over {self.layer_name} ({p.n_steps} steps, baseline: pad tokens keeping "
                   f"[CLS]/[SEP]) on {len(ig_samples)} samples, {len(texts)} shown word by word; the words that carry "
                   f"each class, ranked over all {n} samples by its two-point form (trapezoid rule). "
                   "Target: the " + ("labelled" if ctx.subject.labels is not None else "predicted") + " class.")
        return Section(id=analysis.id, title=analysis.title, summary=summary, metrics=metrics, findings=findings,
                       tables=tables, details=details)

    def _words(self, index: int) -> tuple[list[str], list[list[int]], list[int]]:
        """The sample's words, the token positions of each, and the positions of the special tokens."""
        texts = self.subject.data.texts
        assert texts is not None
        return self.inputs.words(texts[index])

    def _sample(self, index: int, per_token: torch.Tensor) -> dict[str, Any]:
        words, positions, _ = self._words(index)
        values = [float(per_token[pos].sum()) for pos in positions if max(pos) < len(per_token)]
        names = self.subject.class_names
        target, predicted = int(self.targets[index]), int(self.ctx.clean.predictions[index])
        bound = max((abs(v) for v in values), default=0.0) or 1.0
        return {"index": index, "target": names[target] if target < len(names) else str(target),
                "predicted": names[predicted] if 0 <= predicted < len(names) else "?",
                "correct": predicted == target, "total": round(sum(values), 6),
                "words": [[w, round(v, 6), round(v / bound, 4)] for w, v in zip(words, values, strict=False)]}

    def _word_ranking(self) -> dict[str, list[dict[str, Any]]]:
        """Per class: the words with the most attribution toward it over all samples of that class."""
        totals: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        chunks = self._chunks(list(range(len(self.subject))), n_steps=2, method="riemann_trapezoid", internal=None,
                              gain=False)
        for chunk, (per_token, _, _) in zip(chunks, self.ctx.executor.map(text_chunk, chunks,
                                                                          description="word ranking"), strict=True):
            for i, row in zip(chunk.samples, per_token, strict=True):
                words, positions, _ = self._words(i)
                for word, pos in zip(words, positions, strict=True):
                    key = word.lower().strip(string.punctuation + "“”‘’")
                    if key and max(pos) < len(row):
                        totals[int(self.targets[i])][key].append(float(row[pos].sum()))
        names = self.subject.class_names
        out: dict[str, list[dict[str, Any]]] = {}
        for c, by_word in sorted(totals.items()):
            ranked = sorted(by_word.items(), key=lambda kv: -sum(kv[1]))[:self.p.top_words]
            out[names[c] if c < len(names) else str(c)] = [
                {"word": w, "total": round(sum(v), 6), "mean": round(sum(v) / len(v), 6), "count": len(v)}
                for w, v in ranked]
        return out

    def _words_table(self, ranking: dict[str, list[dict[str, Any]]]) -> Table:
        rows = [[cls, rank, item["word"], item["total"], item["mean"], item["count"]]
                for cls, items in ranking.items() for rank, item in enumerate(items, start=1)]
        return Table(id="attribution.words", title="Words that carry each class",
                     columns=["class", "rank", "word", "total attribution", "mean", "occurrences"], rows=rows,
                     caption="Attribution toward the sample's target class, summed over a word's pieces, over every "
                             "sample of the class (two-point Integrated Gradients from the pad baseline). Words are "
                             "lower-cased, without surrounding punctuation.")


