"""Feeding a model and reading its answer: samples -> model inputs, raw output -> (batch, outputs) scores.

One place knows the calling conventions (Hugging Face keyword inputs or one positional tensor) and the
output conventions (a tensor, a tuple, a dict or ModelOutput with `logits`, a bare encoder's hidden
states, pooled), so the walk and every analysis see the same (batch, classes) scores.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from auditor.config import DataSpec
from auditor.errors import DataError, ModelLoadError
from auditor.subject.data import AuditData
from auditor.subject.heads import pool_hidden
from auditor.subject.loading import LoadedModel
from auditor.subject.task import log_probabilities


AUDIT_MASK = "audit_mask"
"""The input key of a language model's audited tokens (bool, batch x tokens); never passed to the model."""


def next_token_losses(logits: torch.Tensor, inputs: Mapping[str, torch.Tensor], *, width: int) -> torch.Tensor:
    """(batch, width) loss of each next token: column j is -log p(token j+1 | tokens 0..j), NaN where token j+1
    is not audited (padding, prompt) and past the text; the width is fixed so every batch has the same."""
    ids = inputs["input_ids"]
    audited = inputs.get(AUDIT_MASK)
    if audited is None:
        audited = inputs.get("attention_mask", torch.ones_like(ids)).bool().clone()
        audited[:, 0] = False
    if logits.dim() != 3 or logits.shape[:2] != ids.shape:
        raise ModelLoadError(f"a causal language model's logits have shape {tuple(logits.shape)}; expected "
                             f"(batch, tokens={ids.shape[1]}, vocabulary)")
    log_p = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    picked = -log_p.gather(2, ids[:, 1:].unsqueeze(2)).squeeze(2)
    losses = torch.where(audited[:, 1:], picked, torch.full_like(picked, float("nan")))
    if losses.shape[1] >= width:
        return losses[:, :width]
    return torch.nn.functional.pad(losses, (0, width - losses.shape[1]), value=float("nan"))


class ModelAdapter:
    """Turns audit samples into inputs for `loaded.module` and its output into 2-D scores."""

    def __init__(self, loaded: LoadedModel, data: AuditData, spec: DataSpec, device: torch.device) -> None:
        self.loaded = loaded
        self.data = data
        self.spec = spec
        self.device = device
        self.keyword_inputs = loaded.kind != "module" or data.kind == "text"
        self.sample_shape: tuple[int, ...] | None = None
        """A generator's sample shape, read from its output (None until it ran)."""
        self.cut_texts: dict[int, int] = {}
        """A language model's texts longer than `max_length` tokens: sample index -> its length in tokens."""
        self._accepted = self._accepted_keywords(loaded.module)
        if data.kind == "none":  # nothing will be encoded
            return
        if data.kind == "text" and loaded.tokenizer is None:
            raise DataError(
                f"{data.source} is text, but the model {loaded.name!r} has no tokenizer: text data needs a "
                "Hugging Face model directory with its tokenizer files"
            )
        if data.kind != "text" and loaded.kind == "hf_text" and loaded.image_processor is None:
            raise DataError(f"{data.source} is not text, but {loaded.name!r} is a text model")

    @staticmethod
    def _accepted_keywords(module: nn.Module) -> set[str] | None:
        try:
            params = inspect.signature(module.forward).parameters.values()
        except (TypeError, ValueError):
            return None
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return None
        return {p.name for p in params}

    # --- inputs -----------------------------------------------------------------------------------

    def encode(self, start: int, stop: int) -> dict[str, torch.Tensor]:
        """Model inputs for samples [start, stop), on the audit device."""
        data = self.data
        if data.kind == "text" and self.loaded.causal_lm:
            assert data.texts is not None
            prompts = data.prompt_chars[start:stop] if data.prompt_chars is not None else None
            return self.encode_lm_texts(data.texts[start:stop], prompt_chars=prompts, first=start)
        if data.kind == "text":
            assert data.texts is not None
            return self.encode_texts(data.texts[start:stop])
        if data.kind == "images":
            inputs = self._encode_images(start, stop)
        else:
            assert data.arrays is not None
            x = torch.from_numpy(np.ascontiguousarray(data.arrays[start:stop]))
            inputs = {"pixel_values": x} if self.loaded.kind == "hf_image" else {"x": x}
            if data.conditions is not None:  # a conditional generator: (noise, class) positionally
                inputs["y"] = torch.from_numpy(np.ascontiguousarray(data.conditions[start:stop])).long()
        return {k: v.to(self.device) for k, v in inputs.items()}

    def encode_texts(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Model inputs for any texts (edited copies of audit samples), tokenized as the audit data is."""
        inputs = dict(self.loaded.tokenizer(texts, padding=True, truncation=True, max_length=self.spec.max_length,
                                            return_tensors="pt"))
        if self._accepted is not None:
            inputs = {k: v for k, v in inputs.items() if k in self._accepted}
        return {k: v.to(self.device) for k, v in inputs.items()}

    def encode_lm_texts(self, texts: list[str], *, prompt_chars: list[int] | None = None,
                        first: int | None = None) -> dict[str, torch.Tensor]:
        """A language model's inputs: token ids cut to `max_length`, padded on the right, and `audit_mask`, the
        tokens whose prediction is audited (not padding, not the prompt: a prompt and its completion are
        tokenized apart, so the boundary is exact). `first`: the index of the first text in the audit data,
        to record which texts were cut."""
        tokenizer = self.loaded.tokenizer
        limit = self.spec.max_length
        rows: list[tuple[list[int], int]] = []
        for i, text in enumerate(texts):
            split = prompt_chars[i] if prompt_chars is not None else 0
            prompt = list(tokenizer(text[:split])["input_ids"]) if split else []
            rest = list(tokenizer(text[split:], add_special_tokens=not prompt)["input_ids"])
            ids = prompt + rest
            if len(ids) > limit and first is not None:
                self.cut_texts[first + i] = len(ids)
            rows.append((ids[:limit], len(prompt)))
        width = max(2, max(len(ids) for ids, _ in rows))
        pad = getattr(tokenizer, "pad_token_id", None) or 0
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        audited = torch.zeros((len(rows), width), dtype=torch.bool)
        for i, (ids, prompt_tokens) in enumerate(rows):
            input_ids[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention[i, :len(ids)] = 1
            audited[i, max(1, prompt_tokens):len(ids)] = True  # the first token has nothing to be predicted from
        inputs = {"input_ids": input_ids, "attention_mask": attention, AUDIT_MASK: audited}
        return {k: v.to(self.device) for k, v in inputs.items()}

    def _encode_images(self, start: int, stop: int) -> dict[str, torch.Tensor]:
        from PIL import Image, UnidentifiedImageError

        assert self.data.image_paths is not None
        images = []
        for path in self.data.image_paths[start:stop]:
            try:
                with Image.open(path) as img:
                    mode = "RGB" if self.loaded.image_processor is not None else self.spec.image_mode
                    images.append(img.convert(mode))
            except (UnidentifiedImageError, OSError) as err:
                raise DataError(f"cannot read image {path}: {err}") from None
        if self.loaded.image_processor is not None:
            return {"pixel_values": self.loaded.image_processor(images=images, return_tensors="pt")["pixel_values"]}
        if self.spec.image_size:
            images = [im.resize((self.spec.image_size, self.spec.image_size)) for im in images]
        sizes = {im.size for im in images}
        if len(sizes) > 1:
            raise DataError(f"images in {self.data.source} differ in size ({sorted(sizes)[:4]}); "
                            "set --image-size to resize them")
        arrays = [np.asarray(im, dtype=np.float32) / 255.0 for im in images]
        x = np.stack([a[None] if a.ndim == 2 else a.transpose(2, 0, 1) for a in arrays])
        return {"x": torch.from_numpy(x)}

    # --- outputs ----------------------------------------------------------------------------------

    def call(self, model: nn.Module, inputs: dict[str, torch.Tensor]) -> Any:
        """Runs the model on one batch of inputs and returns its raw output."""
        if self.keyword_inputs:
            return model(**{k: v for k, v in inputs.items() if k != AUDIT_MASK})
        return model(*inputs.values())

    def scores(self, output: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model's answer as (batch, outputs): logits, or a bare encoder's pooled hidden state."""
        batch = next(iter(inputs.values())).shape[0]
        tensor = self._pick(output, inputs)
        if self.loaded.causal_lm:
            return next_token_losses(tensor, inputs, width=self.spec.max_length - 1)
        if self.loaded.generates:  # a generator's answer is its sample, flattened
            if tensor.dim() == 0 or tensor.shape[0] != batch:
                raise ModelLoadError(f"the generator's output has shape {tuple(tensor.shape)}; expected "
                                     f"(batch={batch}, ...) samples")
            self.sample_shape = tuple(tensor.shape[1:])
            return tensor.reshape(batch, -1)
        if tensor.dim() == 1:
            tensor = tensor.unsqueeze(1)
        if tensor.dim() == 3 and not self.loaded.has_head:
            tensor = pool_hidden(tensor, inputs.get("attention_mask"), "mean")
        if tensor.dim() != 2 or tensor.shape[0] != batch:
            raise ModelLoadError(
                f"the model's output has shape {tuple(tensor.shape)}; expected (batch={batch}, classes)"
            )
        return tensor

    def _pick(self, output: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if isinstance(output, torch.Tensor):
            return output
        if isinstance(output, Mapping) or hasattr(output, "keys"):
            keys = list(output.keys())
            if output.get("logits") is not None:
                return cast(torch.Tensor, output["logits"])
            if not self.loaded.has_head and output.get("last_hidden_state") is not None:
                hidden = cast(torch.Tensor, output["last_hidden_state"])
                if hidden.dim() == 4:  # conv encoders: (batch, channels, h, w)
                    return hidden.mean(dim=(2, 3))
                return hidden
            tensors = [v for v in output.values() if isinstance(v, torch.Tensor)]
            if len(tensors) == 1:
                return tensors[0]
            raise ModelLoadError(
                f"the model returns a {type(output).__name__} with keys {keys} and no 'logits': "
                "return the class scores as a tensor or under 'logits'"
            )
        if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
            return output[0]
        raise ModelLoadError(f"the model returned {type(output).__name__}; expected a tensor of class scores")

    def forward(self, model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.scores(self.call(model, inputs), inputs)

    def logits(self, model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model's raw logits: a language model's (batch, tokens, vocabulary), where `scores` gives losses."""
        return self._pick(self.call(model, inputs), inputs)

    def log_probability_fn(self, model: nn.Module, keys: Sequence[str]) -> Callable[..., torch.Tensor]:
        """Positional tensors (the inputs named `keys`, in that order) -> log-probabilities of every class:
        what Captum's explainers take as `forward_func`, for `model` or any copy of it."""
        def forward(*tensors: torch.Tensor) -> torch.Tensor:
            return log_probabilities(self.forward(model, dict(zip(keys, tensors, strict=True))))
        return forward

    # --- attribution baselines ----------------------------------------------------------------------

    def baseline_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Text: every token but the sequence markers ([CLS], [SEP], padding) replaced by the pad token.

        Keeping [CLS]/[SEP] in place keeps the baseline a sequence the model was trained to read.
        """
        pad = getattr(self.loaded.tokenizer, "pad_token_id", None)
        if pad is None:
            raise ValueError("the tokenizer has no pad token to build a baseline from")
        kept = torch.tensor(self.marker_ids(), device=input_ids.device, dtype=input_ids.dtype)
        keep = torch.isin(input_ids, kept) if kept.numel() else torch.zeros_like(input_ids, dtype=torch.bool)
        return torch.where(keep, input_ids, torch.full_like(input_ids, pad))

    def marker_ids(self) -> list[int]:
        """The tokenizer's sequence markers ([CLS], [SEP], BOS, EOS, padding): positions a reader does not read.
        [UNK] and [MASK] are special tokens too, but they stand for content."""
        tokenizer = self.loaded.tokenizer
        markers = {getattr(tokenizer, f"{name}_token_id", None) for name in ("cls", "sep", "bos", "eos", "pad")}
        return sorted(m for m in markers if m is not None)
