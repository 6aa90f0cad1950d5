"""The subject of an audit: a loaded model, its data, how to feed it, and what its outputs mean."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import torch

from auditor.subject.adapters import ModelAdapter
from auditor.subject.data import AuditData
from auditor.subject.inputs import Inputs, inputs_for
from auditor.subject.judges import Judges
from auditor.subject.loading import LoadedModel
from auditor.subject.task import Task, TaskHead, task_head

Modality = Literal["text", "image", "tabular", "noise", "none"]
"""What the model reads; "noise": a generator's noise vectors; "none": no audit data was given (an audit of
the weights alone)."""
ENCODED_CACHE_BYTES = 1 << 30
"""Encoded batches up to this size are kept for every pass of the audit; larger data is re-encoded."""


@dataclass
class Batch:
    """One batch of model inputs, with the class indices of its samples when the data is labelled."""

    start: int
    stop: int
    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor | None

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass
class Subject:
    """What is audited: a loaded model, its data, how to feed it, and what its outputs mean."""

    loaded: LoadedModel
    data: AuditData
    adapter: ModelAdapter
    device: torch.device
    modality: Modality
    task: Task
    n_outputs: int
    labels: torch.Tensor | None
    class_names: list[str] = field(default_factory=list)
    judges: Judges | None = None
    """A generator's judges (its discriminator, and a classifier when one is given)."""
    _encoded: dict[int, list[Batch]] = field(default_factory=dict, repr=False)
    _first: dict[int, Batch] = field(default_factory=dict, init=False, repr=False)
    """The first batch per batch size, encoded before the passes (`first_batch`); a copy of the subject over
    other data (`dataclasses.replace`) starts without it."""
    _input_means: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def model(self) -> torch.nn.Module:
        return self.loaded.module

    @cached_property
    def inputs(self) -> Inputs:
        """What the analyses ask of the modality (the attributed input, its baseline, positions, deletion and
        display), chosen once from what the subject reads."""
        return inputs_for(self)

    @property
    def head(self) -> TaskHead:
        """What the scores mean: the per-sample target and the clean metrics."""
        return task_head(self.task)

    def __len__(self) -> int:
        return len(self.data)

    @property
    def has_data(self) -> bool:
        """False in an audit without data, where only the analyses that read the weights run."""
        return self.data.kind != "none"

    @property
    def conditions(self) -> torch.Tensor | None:
        """A conditional generator's classes asked for, one per sample (None otherwise)."""
        return torch.from_numpy(self.data.conditions).long() if self.data.conditions is not None else None

    def n_batches(self, batch_size: int) -> int:
        return -(-len(self.data) // batch_size)

    def _encode_batch(self, start: int, stop: int) -> Batch:
        labels = self.labels[start:stop].to(self.device) if self.labels is not None else None
        return Batch(start, stop, self.adapter.encode(start, stop), labels)

    def first_batch(self, batch_size: int) -> Batch:
        """The first batch `batches` yields, encoded once (to time a forward before the passes run)."""
        cached = self._encoded.get(batch_size)
        if cached:
            return cached[0]
        if batch_size not in self._first:
            self._first[batch_size] = self._encode_batch(0, min(batch_size, len(self.data)))
        return self._first[batch_size]

    def batch_at(self, start: int, batch_size: int) -> Batch:
        """The batch of `batches(batch_size)` that begins at sample `start`, encoded as that one is (a worker
        of a cluster runs some of the batches)."""
        cached = self._encoded.get(batch_size)
        if cached is not None:
            return cached[start // batch_size]
        if start == 0:
            return self.first_batch(batch_size)
        return self._encode_batch(start, min(start + batch_size, len(self.data)))

    def batches(self, batch_size: int) -> Iterator[Batch]:
        """The audit data in batches, encoded once per audit and reused by every pass.

        Tokenizing text or decoding images costs as much as a forward on a small model, and an audit makes
        many passes. The encoded batches are kept while they fit in `ENCODED_CACHE_BYTES` (1 GiB: a few
        thousand 224² RGB images); past that, each pass encodes again, batch by batch, so memory stays flat.
        """
        cached = self._encoded.get(batch_size)
        if cached is not None:
            yield from cached
            return
        kept: list[Batch] | None = []
        size = 0
        for start in range(0, len(self.data), batch_size):
            stop = min(start + batch_size, len(self.data))
            batch = self._first[batch_size] if start == 0 and batch_size in self._first \
                else self._encode_batch(start, stop)
            if kept is not None:
                size += sum(t.numel() * t.element_size() for t in batch.inputs.values())
                if size <= ENCODED_CACHE_BYTES:
                    kept.append(batch)
                else:
                    kept = None
            yield batch
        if kept is not None:
            self._encoded[batch_size] = kept


    def encode_samples(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """Inputs for any samples, in the given order: one encode per contiguous run of indices (usually
        one), padded to one length for text."""
        runs: list[tuple[int, int]] = []
        for i in indices:
            if runs and i == runs[-1][1]:
                runs[-1] = (runs[-1][0], i + 1)
            else:
                runs.append((i, i + 1))
        parts = [self.adapter.encode(start, stop) for start, stop in runs]
        if len(parts) == 1:
            return parts[0]
        width = max((t.shape[1] for p in parts for t in p.values() if t.dim() == 2 and not t.is_floating_point()),
                    default=0)
        pad = getattr(self.loaded.tokenizer, "pad_token_id", 0) or 0
        out: dict[str, list[torch.Tensor]] = defaultdict(list)
        for part in parts:
            for key, value in part.items():
                if value.dim() == 2 and not value.is_floating_point() and value.shape[1] < width:
                    value = torch.nn.functional.pad(value, (0, width - value.shape[1]),
                                                    value=pad if key == "input_ids" else 0)
                out[key].append(value)
        return {k: torch.cat(v) for k, v in out.items()}

    def input_means(self, batch_size: int) -> dict[str, torch.Tensor]:
        """The mean of every float input over the audit data (a data-mean baseline), computed once."""
        if self._input_means is None:
            sums: dict[str, torch.Tensor] = {}
            for batch in self.batches(batch_size):
                for key, value in batch.inputs.items():
                    if value.is_floating_point():
                        total = value.double().sum(dim=0)
                        sums[key] = sums[key] + total if key in sums else total
            self._input_means = {k: (v / len(self)).float() for k, v in sums.items()}
        return self._input_means
