"""Text: each unit's top examples as snippets around its peak token, and a gradient-guided token search."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from auditor.engine.analysis import PlanContext
from auditor.analyses.features.base import RunBase
from auditor.analyses.features.neurons import fires_on, promoted_tokens
from auditor.analyses.features.params import UnitView
from auditor.analyses.features.tokens import SearchSettings, TokenSearch
from auditor.analyses.features.units import run_to, unit_values, unit_view
from auditor.walk.records import split_call


class TextRun(RunBase):
    def _search(self, name: str, views: list[UnitView]) -> None:
        """A token search per unit. A causal LM's unit is scored at the last position of the searched sequence
        (the one that sees every searched token); any other's at its peak over the sequence."""
        embeddings = _input_embeddings(self.ctx.subject.model) if self.causal else _word_embeddings(self.ctx)
        if embeddings is None or self._text.tokenizer is None:
            return
        search = TokenSearch(embeddings, self._text.tokenizer, self.keys, device=self.subject.device,
                             causal=self.causal)
        module, call = self._module(name)
        p = self.p
        settings = SearchSettings(length=p.search_length, steps=p.search_steps, candidates=p.search_candidates,
                                  top=p.search_top, seed=self.ctx.config.seed)
        for v in views:
            unit = v.unit

            def score(inputs: dict[str, torch.Tensor], unit: int = unit) -> torch.Tensor:
                out = run_to(module, lambda: self._forward(inputs), call=call)
                if self.causal:
                    return unit_view(out, module)[0][:, -1, unit]
                units = torch.full((out.shape[0],), unit, dtype=torch.long)
                mask = inputs.get("attention_mask")
                x, _ = unit_view(out, module)
                valid = mask if mask is not None and x.shape[1] == mask.shape[1] else None
                return unit_values(out, module, units, "peak", valid)

            result = search.run(score, settings)
            v.optimized = v.optimized_objective = result.value
            v.search = {"tokens": result.tokens, "text": self._join(result.tokens), "value": result.value,
                        "start_value": result.start_value, "evaluated": result.evaluated,
                        "scored": "last" if self.causal else "peak"}

    def _neurons(self, name: str, views: list[UnitView]) -> None:
        """A language model's neurons: the tokens each peaks on over its top-k examples, and the tokens its output
        row promotes directly (when `name` is an MLP's activation whose output projection is found)."""
        for v in views:
            v.fires_on = fires_on([self._token_at(s, pos) for s, value, pos in v.peaks if value > 0])
        topk = self.ctx.capture.top_k.get(name)
        if topk is None or topk.values is None or self._text.tokenizer is None:
            return
        promoted = promoted_tokens(self.subject.model, split_call(name)[0], int(topk.values.shape[0]),
                                   [v.unit for v in views], self._text.tokenizer, top=self.p.promoted_tokens)
        for v in views:
            if promoted is not None:
                v.promotes = promoted[v.unit]

    def _token_at(self, index: int, position: int) -> str:
        tokens = self._tokens(index)
        return self._join([tokens[position]]) if 0 <= position < len(tokens) else ""

    def _join(self, tokens: list[str]) -> str:
        """Tokens as text: a language model's through its tokenizer (GPT-2's `Ġ` becomes a space), else word
        pieces glued."""
        return self._text.text_of(tokens).strip() if self.causal else _join_tokens(tokens)

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
        if v.fires_on is not None:
            unit["fires_on"] = [{"token": t, "count": c} for t, c in v.fires_on]
        if v.promotes is not None:
            unit["promotes"] = [{"token": t, "logit": round(x, 6)} for t, x in v.promotes]
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
        if index not in self._token_cache:
            self._token_cache[index] = self._text.tokens(self._inputs([index])[self._text.key][0].tolist())
        return self._token_cache[index]

    def _text_positions(self, index: int) -> torch.Tensor:
        """(positions,) bool: the sample's own tokens, not special ones ([CLS], [SEP], [PAD]) nor masked padding."""
        return self._text.not_special(self._inputs([index]))

    def _snippet(self, index: int, position: int, value: float) -> dict[str, Any]:
        """The tokens around a unit's peak: [before, the token, after], word pieces kept as the model saw them."""
        tokens = self._tokens(index)
        if position < 0 or position >= len(tokens):  # a unit with one position (pooled, logits): the text itself
            own = self._text_positions(index)
            text = [t for t, keep in zip(tokens, own.tolist(), strict=False) if keep]
            return {"sample": index, "value": value, "before": self._join(text), "token": "", "after": ""}
        c = self.p.context_tokens
        before = tokens[max(0, position - c):position]
        # a causal model's unit at the peak has seen only the tokens up to it: no context after
        after = [] if self.causal else tokens[position + 1:position + 1 + c]
        return {"sample": index, "value": value, "before": ("… " if position - c > 0 else "") + self._join(before),
                "token": self._join([tokens[position]]),
                "after": self._join(after) + (" …" if after and position + 1 + c < len(tokens) else "")}


def _word_embeddings(ctx: PlanContext) -> nn.Embedding | None:
    """The token embedding table: the largest `nn.Embedding` under the embeddings block (else in the model)."""
    root_name = next((b.name for b in ctx.blocks if b.kind == "embeddings"), "")
    root = ctx.tree.get(root_name) if root_name else ctx.subject.model
    tables = [m for m in root.modules() if isinstance(m, nn.Embedding)]
    return max(tables, key=lambda m: m.num_embeddings) if tables else None


def _input_embeddings(model: nn.Module) -> nn.Embedding | None:
    """A language model's token embedding table (`get_input_embeddings()`: not its position table, which may be
    the larger one)."""
    get = getattr(model, "get_input_embeddings", None)
    table = get() if callable(get) else None
    return table if isinstance(table, nn.Embedding) else None


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
