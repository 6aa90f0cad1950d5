"""Text: each unit's top examples as snippets around its peak token, and a gradient-guided token search."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from auditor.engine.analysis import PlanContext
from auditor.analyses.features.base import RunBase
from auditor.analyses.features.params import UnitView
from auditor.analyses.features.tokens import SearchSettings, TokenSearch
from auditor.analyses.features.units import run_to, unit_values, unit_view


class TextRun(RunBase):
    def _search(self, name: str, views: list[UnitView]) -> None:
        embeddings = _word_embeddings(self.ctx)
        if embeddings is None or self._text.tokenizer is None:
            return
        search = TokenSearch(embeddings, self._text.tokenizer, self.keys, device=self.subject.device)
        module, call = self._module(name)
        p = self.p
        settings = SearchSettings(length=p.search_length, steps=p.search_steps, candidates=p.search_candidates,
                                  top=p.search_top, seed=self.ctx.config.seed)
        for v in views:
            unit = v.unit

            def score(inputs: dict[str, torch.Tensor], unit: int = unit) -> torch.Tensor:
                out = run_to(module, lambda: self._forward(inputs), call=call)
                units = torch.full((out.shape[0],), unit, dtype=torch.long)
                mask = inputs.get("attention_mask")
                x, _ = unit_view(out, module)
                valid = mask if mask is not None and x.shape[1] == mask.shape[1] else None
                return unit_values(out, module, units, "peak", valid)

            result = search.run(score, settings)
            v.optimized = v.optimized_objective = result.value
            v.search = {"tokens": result.tokens, "text": _join_tokens(result.tokens), "value": result.value,
                        "start_value": result.start_value, "evaluated": result.evaluated}

    def _text_unit(self, v: UnitView) -> dict[str, Any]:
        snippets = self._activation_snippets(v)
        rel_samples = [s for s, _ in v.by_relevance]
        rel = []
        if rel_samples:
            maps = self._maps(v.module, rel_samples)
            for k, (s, r) in enumerate(v.by_relevance):
                rel.append(self._snippet(s, self._own_peak(maps[k], s, v.unit), r))
        unit = {"unit": v.unit, "label": self._unit_label(v.module, v.unit), "max_real": v.max_real,
                "relevance": v.relevance, "search": v.search, "by_activation": snippets, "by_relevance": rel}
        special = {s["special_peak"]["token"] for s in snippets if "special_peak" in s}
        if snippets and len(special) == 1 and all("special_peak" in s for s in snippets):
            unit["peaks_on"] = special.pop()  # a unit of a special token: said once, its own-text peaks shown
        return unit

    def _own_peak(self, map_: torch.Tensor, index: int, unit: int) -> int:
        """The position of a unit's peak among a sample's own text (never [CLS], [SEP] or the padding after it);
        -1 for a unit with one position (pooled, logits): the snippet is then the whole text."""
        if map_.shape[0] <= 1:
            return -1
        values = map_[:len(self._tokens(index)), unit].double().clone()
        values[~self._text_positions(index)[:len(values)]] = -math.inf
        return int(values.argmax()) if bool(torch.isfinite(values).any()) else -1

    def _activation_snippets(self, v: UnitView) -> list[dict[str, Any]]:
        """The top samples by activation around their peak. A peak on a special token ([CLS], [SEP]) says what the
        unit does at that token, not in the text: the snippet marks the text's own peak, with the special one beside."""
        if not v.by_activation:
            return []
        maps = self._maps(v.module, [s for s, _, _ in v.by_activation])
        out = []
        for k, (s, value, pos) in enumerate(v.by_activation):
            own = self._own_peak(maps[k], s, v.unit)
            if maps.shape[1] <= 1 or own < 0 or own == pos:
                out.append(self._snippet(s, own if maps.shape[1] <= 1 else pos, value))
                continue
            snippet = self._snippet(s, own, float(maps[k, own, v.unit]))
            snippet["special_peak"] = {"token": self._tokens(s)[pos] if 0 <= pos < len(self._tokens(s)) else "",
                                       "value": value}
            out.append(snippet)
        return out

    def _tokens(self, index: int) -> list[str]:
        return self._text.tokens(self._inputs([index])[self._text.key][0].tolist())

    def _text_positions(self, index: int) -> torch.Tensor:
        """(positions,) bool: the sample's own tokens, not special ones ([CLS], [SEP], [PAD]) nor masked padding."""
        return self._text.not_special(self._inputs([index]))

    def _snippet(self, index: int, position: int, value: float) -> dict[str, Any]:
        """The tokens around a unit's peak: [before, the token, after], word pieces kept as the model saw them."""
        tokens = self._tokens(index)
        if position < 0 or position >= len(tokens):  # a unit with one position (pooled, logits): the text itself
            own = self._text_positions(index)
            text = [t for t, keep in zip(tokens, own.tolist(), strict=False) if keep]
            return {"sample": index, "value": value, "before": _join_tokens(text), "token": "", "after": ""}
        c = self.p.context_tokens
        before = tokens[max(0, position - c):position]
        after = tokens[position + 1:position + 1 + c]
        return {"sample": index, "value": value, "before": ("… " if position - c > 0 else "") + _join_tokens(before),
                "token": _join_tokens([tokens[position]]),
                "after": _join_tokens(after) + (" …" if position + 1 + c < len(tokens) else "")}


def _word_embeddings(ctx: PlanContext) -> nn.Embedding | None:
    """The token embedding table: the largest `nn.Embedding` under the embeddings block (else in the model)."""
    root_name = next((b.name for b in ctx.blocks if b.kind == "embeddings"), "")
    root = ctx.tree.get(root_name) if root_name else ctx.subject.model
    tables = [m for m in root.modules() if isinstance(m, nn.Embedding)]
    return max(tables, key=lambda m: m.num_embeddings) if tables else None


def _join_tokens(tokens: list[str]) -> str:
    """Word pieces joined as text: "##" continuations glued to the previous piece."""
    out = ""
    for t in tokens:
        if t.startswith("##"):
            out += t[2:]
        else:
            out += (" " if out else "") + t
    return out


def _shared_lists(units: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Units whose top-by-relevance lists are the same samples with the same values (a two-class head's two
    logits, whose relevances mirror each other) show the list once: the later units name the first instead of
    repeating it as if it were a distinct result."""
    seen: dict[tuple[tuple[int, float], ...], str] = {}
    out = []
    for unit in units:
        key = tuple((int(s["sample"]), round(float(s["value"]), 6)) for s in unit["by_relevance"])
        if key and key in seen:
            unit = {**unit, "by_relevance": [], "relevance_same_as": seen[key]}
        elif key:
            seen[key] = str(unit["label"])
        out.append(unit)
    return out
