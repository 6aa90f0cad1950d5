"""The seam for the input modality: what an analysis asks of the inputs it attributes, deletes and shows.

One `Inputs` per subject (`subject.inputs`), chosen once from what the subject reads: `TextInputs` (token ids
from a tokenizer), `ImageInputs` (a float (batch, channels, height, width, ...) tensor) or `ArrayInputs`
(tabular and other float inputs). An analysis asks it for the attributed input (`key`), the attribution
baseline, the positions a reader sees, what a deleted position becomes and how a sample reads, instead of
branching on the modality: the role of grad-cam's `reshape_transform` and of Quantus' model interface.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
import torch

from auditor.subject.adapters import ModelAdapter
from auditor.subject.loading import LoadedModel

Baseline = Literal["zeros", "mean"]
"""Float inputs' attribution baseline: black (zeros) or the data mean. Text's is always pad tokens."""


class Source(Protocol):
    """What the inputs read of their subject (a `Subject`): how samples are encoded, the model, the data mean."""

    @property
    def adapter(self) -> ModelAdapter: ...

    @property
    def loaded(self) -> LoadedModel: ...

    @property
    def modality(self) -> str: ...

    def input_means(self, batch_size: int) -> dict[str, torch.Tensor]: ...


class Inputs:
    """Float inputs: every value (or pixel, channels summed) is a position; the baseline is zeros or the mean."""

    is_text: ClassVar[bool] = False
    unit: ClassVar[str] = "features"
    """What one position is, in words."""
    map_similarity: ClassVar[str] = "rank correlation of |maps|"
    """How two maps' absolute values are compared (the randomization sanity check)."""

    def __init__(self, subject: Source) -> None:
        self.subject = subject

    @cached_property
    def first(self) -> dict[str, torch.Tensor]:
        """The model inputs of the first sample, encoded once: their names and shapes are the layout."""
        return self.subject.adapter.encode(0, 1)

    @property
    def key(self) -> str:
        """The input attributed: the first float input (`input_ids` for text), else the first input."""
        return next((k for k, v in self.first.items() if v.is_floating_point()), next(iter(self.first)))

    @property
    def spatial(self) -> bool:
        """Whether a map is one value per pixel of (batch, channels, height, width, ...) inputs."""
        return self.first[self.key].dim() >= 4

    def baseline(self, x: torch.Tensor, kind: Baseline = "zeros", *, batch_size: int = 64) -> torch.Tensor:
        """The attribution baseline of the attributed input `x`: zeros, or the data mean over the audit data
        (computed once, in batches of `batch_size`)."""
        if kind == "mean":
            mean = self.subject.input_means(batch_size)[self.key]
            return mean.to(x.device).expand_as(x).contiguous()
        return torch.zeros_like(x)

    def baseline_kind(self, requested: Baseline) -> Literal["zeros", "mean", "pad"]:
        """The baseline an explainer starts from: the one asked for (text: always the pad token)."""
        return requested

    def deletion_fill(self, x: torch.Tensor, requested: str) -> str:
        """What a deleted position becomes: an image's may be imputed or blurred (`requested`), anything else's
        the baseline (text: the pad token)."""
        return requested if x.dim() == 4 and requested != "baseline" else "baseline"

    def deletion_units(self, x: torch.Tensor, patch: int | None, *, short: bool = False) -> str:
        """What deletion removes, in words: patches of `patch` pixels, or values, or what one position is (`unit`:
        features, tokens)."""
        if patch is not None:
            return "patches" if short else f"{patch}×{patch}-pixel patches"
        return self.unit if short or x.dim() < 4 else "values"

    def positions(self, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Per sample, the flat map positions a reader sees: every pixel (images) or value (arrays)."""
        x = inputs[self.key]
        size = int(np.prod(x.shape[2:])) if self.spatial else int(np.prod(x.shape[1:]))
        return [torch.arange(size) for _ in range(x.shape[0])]

    def per_position(self, attribution: torch.Tensor, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """An attribution shaped like the input -> one signed value per position (channels summed)."""
        a = attribution.detach().float()
        return a.sum(dim=1) if a.dim() >= 4 else a

    def sample(self, inputs: dict[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
        """Sample `i` of a batch of inputs, as a batch of one."""
        return {k: v[i:i + 1] for k, v in inputs.items()}

    def deletion(self, one: dict[str, torch.Tensor], where: torch.Tensor,
                 baseline: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
        """How positions of one sample are deleted: a function of `masks` (rows, positions) that gives the sample's
        inputs once per row, with the values its row marks replaced by the `baseline` of the attributed input
        (every value is a position here, so `where` is all of them)."""
        key = self.key
        x = one[key]
        spatial = x.shape[2:] if x.dim() >= 4 else x.shape[1:]
        constant = baseline(x)

        def delete(masks: torch.Tensor) -> dict[str, torch.Tensor]:
            rows = masks.shape[0]
            m = masks.reshape(rows, 1, *spatial) if x.dim() >= 4 else masks.reshape(rows, *spatial)
            out = {k: v.expand(rows, *v.shape[1:]).clone() for k, v in one.items() if k != key}
            out[key] = torch.where(m, constant.expand_as(x), x.expand(rows, *x.shape[1:]))
            return {k: out[k] for k in one}
        return delete


    @staticmethod
    def display(x: torch.Tensor) -> np.ndarray:
        """One sample's input as a picture in [0, 1]: grey (H, W) or RGB (H, W, 3) for an image of 1 or 3
        channels; any other shape min-max scaled as it is."""
        a = x.detach().float()
        if a.dim() == 3 and a.shape[0] in (1, 3):
            a = a[0] if a.shape[0] == 1 else a.permute(1, 2, 0)
        lo, hi = float(a.min()), float(a.max())
        return ((a - lo) / (hi - lo) if hi > lo else torch.zeros_like(a)).numpy()


class ArrayInputs(Inputs):
    """Tabular and other float inputs (a generator's noise too): one position per value."""


class ImageInputs(Inputs):
    """Images: a float (batch, channels, height, width) tensor; maps are one value per pixel."""

    unit: ClassVar[str] = "pixels"
    map_similarity: ClassVar[str] = "SSIM of |maps|"


class TextInputs(Inputs):
    """Token ids from the subject's tokenizer: a position is a token; the baseline and a deleted token are the
    pad token, with the sequence markers ([CLS], [SEP]) kept."""

    is_text: ClassVar[bool] = True
    unit: ClassVar[str] = "tokens"

    @property
    def key(self) -> str:
        return "input_ids"

    @property
    def spatial(self) -> bool:
        return False

    @property
    def tokenizer(self) -> Any:
        return self.subject.loaded.tokenizer

    @property
    def pad_id(self) -> int:
        """The token a deleted position becomes (0 when the tokenizer has no pad token)."""
        return getattr(self.tokenizer, "pad_token_id", 0) or 0

    @property
    def special_ids(self) -> set[int]:
        """Every special token of the tokenizer ([CLS], [SEP], [PAD], [UNK], [MASK]...)."""
        return set(getattr(self.tokenizer, "all_special_ids", []) or [])

    def baseline(self, x: torch.Tensor, kind: Baseline = "zeros", *, batch_size: int = 64) -> torch.Tensor:
        """Every token but the sequence markers replaced by the pad token (`kind` does not apply to text)."""
        return self.subject.adapter.baseline_ids(x)

    def baseline_kind(self, requested: Baseline) -> Literal["zeros", "mean", "pad"]:
        return "pad"

    def deletion_fill(self, x: torch.Tensor, requested: str) -> str:
        return "pad"

    def baseline_inputs(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The inputs with the token ids replaced by their baseline (attention mask and the rest kept)."""
        return dict(inputs, input_ids=self.baseline(inputs["input_ids"]))

    def mask(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(batch, tokens) attention mask, all ones when the inputs have none."""
        ids = inputs["input_ids"]
        return inputs.get("attention_mask", torch.ones_like(ids))

    def positions(self, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Per sample, the tokens a reader reads: attended, and not a sequence marker ([CLS], [SEP], padding)."""
        ids = inputs["input_ids"]
        markers = torch.tensor(self.subject.adapter.marker_ids(), dtype=ids.dtype)
        content = self.mask(inputs).bool() & ~torch.isin(ids, markers)
        return [torch.nonzero(row).flatten() for row in content]

    def per_position(self, attribution: torch.Tensor, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """An attribution over the embeddings (batch, tokens, hidden) -> one signed value per token (hidden
        units summed, padding zeroed)."""
        return attribution.detach().float().sum(dim=-1) * self.mask(inputs).float()

    def sample(self, inputs: dict[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
        """Sample `i` as it was encoded alone: the batch's padding after it trimmed."""
        one = super().sample(inputs, i)
        length = int(one.get("attention_mask", torch.ones_like(one["input_ids"])).sum())
        return {k: v[:, :length] for k, v in one.items()}

    def deletion(self, one: dict[str, torch.Tensor], where: torch.Tensor,
                 baseline: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
        """How tokens of one sample are deleted: a function of `masks` (rows, len(where)) that gives the sample's
        inputs once per row, the tokens at the positions `where` that its row marks replaced by the pad token
        (not the attribution baseline: a deleted token is a pad, markers or not)."""
        pad = self.pad_id

        def delete(masks: torch.Tensor) -> dict[str, torch.Tensor]:
            rows = masks.shape[0]
            out = {k: v.expand(rows, -1).clone() for k, v in one.items()}
            edited = out["input_ids"][:, where]
            out["input_ids"][:, where] = torch.where(masks, torch.full_like(edited, pad), edited)
            return out
        return delete

    # --- display ---------------------------------------------------------------------------------------

    def tokens(self, ids: Sequence[int]) -> list[str]:
        """Token ids as the tokenizer's strings (word pieces kept as the model saw them)."""
        return [str(t) for t in self.tokenizer.convert_ids_to_tokens(list(ids))]

    def text_of(self, tokens: list[str]) -> str:
        """Tokens joined back into text."""
        return str(self.tokenizer.convert_tokens_to_string(tokens))

    def not_special(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(tokens,) bool for the first sample of `inputs`: its own tokens, neither special ([CLS], [SEP],
        [PAD], [UNK]...) nor masked padding."""
        ids = inputs["input_ids"][0]
        special = self.special_ids
        keep = torch.tensor([int(i) not in special for i in ids.tolist()], dtype=torch.bool)
        mask = inputs.get("attention_mask")
        return keep & mask[0].bool().cpu() if mask is not None else keep

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Per token of `text` encoded as the audit data is (markers included), its character span."""
        enc = self.tokenizer(text, truncation=True, max_length=self.subject.adapter.spec.max_length,
                             return_offsets_mapping=True)
        return [(int(a), int(b)) for a, b in enc["offset_mapping"]]

    def words(self, text: str) -> tuple[list[str], list[list[int]], list[int]]:
        """The words of `text` as a reader sees them, the token positions of each, and the positions of the
        special tokens. Pieces written together ("aren't", "good.") are one word."""
        encoding = self.tokenizer(text, truncation=True, max_length=self.subject.adapter.spec.max_length,
                                  return_offsets_mapping=True)
        word_ids = encoding.word_ids() if hasattr(encoding, "word_ids") else [None] * len(encoding["input_ids"])
        spans: dict[int, list[int]] = defaultdict(list)
        for position, word in enumerate(word_ids):
            if word is not None:
                spans[word].append(position)
        offsets = encoding["offset_mapping"]
        words: list[str] = []
        positions: list[list[int]] = []
        last_end = -1
        for word in sorted(spans):
            tokens = spans[word]
            start, end = offsets[tokens[0]][0], offsets[tokens[-1]][1]
            if start == last_end and words:
                words[-1] += text[start:end]
                positions[-1] += tokens
            else:
                words.append(text[start:end])
                positions.append(list(tokens))
            last_end = end
        return words, positions, [p for p, w in enumerate(word_ids) if w is None]


def inputs_for(subject: Source) -> Inputs:
    """The subject's inputs, chosen once from what it reads."""
    if subject.modality == "text":
        return TextInputs(subject)
    if subject.modality == "image":
        return ImageInputs(subject)
    return ArrayInputs(subject)
