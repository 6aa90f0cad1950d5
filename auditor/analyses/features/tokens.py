"""Activation maximization over discrete text: a gradient-guided token search.

Written here after HotFlip (Ebrahimi et al., 2018) and greedy coordinate gradient (GCG, Zou et al., 2023,
"Universal and Transferable Adversarial Attacks on Aligned Language Models"): the free tokens are a
one-hot matrix multiplied into the embedding matrix, so the gradient of the objective with respect to it
ranks, for every position, the tokens whose swap should raise the objective most (a first-order
estimate). A batch of candidate sequences, each one swap from the current one among the top-ranked
tokens, is then evaluated exactly, and the best is kept when it beats the current sequence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from auditor.analyses.features.units import tuned_threads

Score = Callable[[dict[str, torch.Tensor]], torch.Tensor]
"""Model inputs (batch of sequences) -> (batch,) objective; runs the model."""


@dataclass(frozen=True)
class SearchSettings:
    length: int = 4
    """Free tokens between [CLS] and [SEP]."""
    steps: int = 10
    candidates: int = 32
    """Candidate sequences evaluated exactly per step."""
    top: int = 16
    """Tokens per position the gradient proposes."""
    seed: int = 0


@dataclass(frozen=True)
class SearchResult:
    ids: list[int]
    """The free tokens found."""
    tokens: list[str]
    value: float
    """The objective on the sequence found."""
    start_value: float
    evaluated: int
    """Sequences evaluated exactly."""


def allowed_tokens(tokenizer: Any, vocab_size: int, *, digits: bool = False) -> torch.Tensor:
    """(vocab,) bool: the tokens a search may use: ASCII letters (word pieces too; with `digits`, letters and
    digits), no special or unused token, and no id the tokenizer has no token for (an embedding table larger than
    its vocabulary)."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    allowed = torch.zeros(vocab_size, dtype=torch.bool)
    for token_id, token in enumerate(tokenizer.convert_ids_to_tokens(list(range(vocab_size)))):
        word = str(token).removeprefix("##").removeprefix("Ġ").removeprefix("▁")
        allowed[token_id] = token is not None and token_id not in special and word.isascii() and (word.isalnum() if digits else word.isalpha()) \
            and not str(token).startswith("[")
    return allowed


def _leading_ids(tokenizer: Any, token_id: int) -> list[int]:
    """The ids the tokenizer puts before a text's own tokens (a BOS token, [CLS], or none), read from the encoding
    of one token's text with and without special tokens."""
    text = tokenizer.convert_tokens_to_string(tokenizer.convert_ids_to_tokens([token_id]))
    marked = [int(i) for i in tokenizer(text)["input_ids"]]
    bare = [int(i) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]
    start = next((i for i in range(len(marked) - len(bare) + 1) if marked[i:i + len(bare)] == bare), 0)
    return marked[:start] if bare else []


class TokenSearch:
    """Searches `length` tokens between the tokenizer's sequence markers that maximize `score`.

    `causal` (a language model): the free tokens follow what the tokenizer puts before every text (a BOS token, or
    nothing), nothing after them, and tokens of letters and digits are allowed."""

    def __init__(self, embedding: nn.Embedding, tokenizer: Any, keys: list[str], *, device: torch.device,
                 causal: bool = False) -> None:
        self.embedding, self.tokenizer, self.keys, self.device = embedding, tokenizer, keys, device
        self.allowed = allowed_tokens(tokenizer, embedding.num_embeddings, digits=causal).to(device)
        if not bool(self.allowed.any()):
            raise ValueError("the tokenizer has no whole-word token to search over")
        self.suffix: list[int] = []
        if causal:
            self.prefix = _leading_ids(tokenizer, int(torch.nonzero(self.allowed)[0]))
        else:
            cls_id = getattr(tokenizer, "cls_token_id", None)
            sep_id = getattr(tokenizer, "sep_token_id", None)
            self.prefix = [cls_id] if cls_id is not None else []
            self.suffix = [sep_id] if sep_id is not None else []

    def inputs(self, free: torch.Tensor) -> dict[str, torch.Tensor]:
        """Model inputs for (batch, length) free tokens wrapped in the sequence markers."""
        batch = free.shape[0]
        pre = torch.tensor(self.prefix, dtype=torch.long, device=self.device).expand(batch, -1)
        post = torch.tensor(self.suffix, dtype=torch.long, device=self.device).expand(batch, -1)
        ids = torch.cat([pre, free.to(self.device), post], dim=1)
        out = {"input_ids": ids}
        if "attention_mask" in self.keys:
            out["attention_mask"] = torch.ones_like(ids)
        if "token_type_ids" in self.keys:
            out["token_type_ids"] = torch.zeros_like(ids)
        return out

    def _gradient(self, score: Score, free: torch.Tensor) -> torch.Tensor:
        """(length, vocab): d score / d one-hot of each free token."""
        weight = self.embedding.weight
        one_hot = torch.zeros(free.shape[1], weight.shape[0], dtype=weight.dtype, device=weight.device)
        one_hot[torch.arange(free.shape[1]), free[0]] = 1.0
        one_hot.requires_grad_()
        start = len(self.prefix)

        def swap(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
            free_embeddings = (one_hot @ weight).unsqueeze(0)
            return torch.cat([output[:, :start], free_embeddings, output[:, start + free.shape[1]:]], dim=1)

        handle = self.embedding.register_forward_hook(swap)
        try:
            with torch.enable_grad():
                value = score(self.inputs(free)).sum()
                (grad,) = torch.autograd.grad(value, [one_hot])
        finally:
            handle.remove()
        return grad

    def run(self, score: Score, settings: SearchSettings) -> SearchResult:
        """Greedy coordinate gradient: `steps` rounds of propose by gradient, evaluate exactly, keep the best."""
        generator = torch.Generator().manual_seed(settings.seed)
        pool = torch.nonzero(self.allowed.cpu()).flatten()
        current = pool[torch.randint(len(pool), (1, settings.length), generator=generator)]
        with torch.no_grad():
            best = float(score(self.inputs(current))[0])
        start_value, evaluated = best, 1
        with tuned_threads() as tick:
            for _ in range(settings.steps):
                tick()
                grad = self._gradient(score, current).cpu()
                grad[:, ~self.allowed.cpu()] = -torch.inf
                proposals = grad.topk(min(settings.top, len(pool)), dim=1).indices  # (length, top)
                positions = torch.randint(settings.length, (settings.candidates,), generator=generator)
                choices = torch.randint(proposals.shape[1], (settings.candidates,), generator=generator)
                candidates = current.repeat(settings.candidates, 1)
                candidates[torch.arange(settings.candidates), positions] = proposals[positions, choices]
                candidates = torch.unique(candidates, dim=0)
                with torch.no_grad():
                    values = score(self.inputs(candidates)).float().cpu()
                evaluated += len(candidates)
                top = int(values.argmax())
                if float(values[top]) > best:
                    best, current = float(values[top]), candidates[top:top + 1]
        ids = [int(i) for i in current[0]]
        return SearchResult(ids=ids, tokens=[str(t) for t in self.tokenizer.convert_ids_to_tokens(ids)], value=best,
                            start_value=start_value, evaluated=evaluated)
