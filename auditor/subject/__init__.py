"""Stage 1, load subject: the model, the audit data and the task, checked against each other."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch

from auditor.config import AuditConfig
from auditor.errors import AuditorError, DataError
from auditor.subject.adapters import ModelAdapter
from auditor.subject.data import AuditData, RawLabel, load_data
from auditor.subject.judges import Judges
from auditor.subject.loading import LoadedModel, load_model
from auditor.subject.task import Task, TaskHead, task_head

__all__ = ["Batch", "Modality", "Subject", "Task", "TaskHead", "build_subject", "data_free_subject", "load_subject",
           "map_labels", "resolve_device"]

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
    _input_means: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def model(self) -> torch.nn.Module:
        return self.loaded.module

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
            labels = self.labels[start:stop].to(self.device) if self.labels is not None else None
            batch = Batch(start, stop, self.adapter.encode(start, stop), labels)
            if kept is not None:
                size += sum(t.numel() * t.element_size() for t in batch.inputs.values())
                if size <= ENCODED_CACHE_BYTES:
                    kept.append(batch)
                else:
                    kept = None
            yield batch
        if kept is not None:
            self._encoded[batch_size] = kept


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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise AuditorError("--device cuda was asked for, but torch sees no CUDA device")
    return torch.device(name)


def load_subject(config: AuditConfig) -> Subject:
    """Loads the model and the data that `config` names and checks them against each other; a generator
    (`[generator]`) with its noise and its judges."""
    if config.generator is not None:
        from auditor.subject.generator import load_generator_subject

        return load_generator_subject(config)
    if config.data.path is None:
        return data_free_subject(load_model(config.model), config)
    return build_subject(load_model(config.model), load_data(config.data, seed=config.seed), config)


def data_free_subject(loaded: LoadedModel, config: AuditConfig, *, task: Task | None = None) -> Subject:
    """A subject without audit data: the model alone, never called. Its task follows from the model (a head
    or not) unless given; its outputs and labels are unknown, so only analyses that read the weights run on it."""
    device = resolve_device(config.device)
    loaded.module.to(device)
    data = AuditData.none()
    return Subject(loaded=loaded, data=data, adapter=ModelAdapter(loaded, data, config.data, device), device=device,
                   modality="none", task=task or ("classification" if loaded.has_head else "embedding"), n_outputs=0,
                   labels=None, class_names=list(loaded.class_names))


def build_subject(loaded: LoadedModel, data: AuditData, config: AuditConfig, *, task: Task | None = None,
                  judges: Judges | None = None) -> Subject:
    """Runs one probe forward on two samples, decides the task, and maps labels to class indices; a
    generator's judges must accept its samples."""
    if len(data) == 0:
        raise DataError("the audit data holds no samples")
    device = resolve_device(config.device)
    adapter = ModelAdapter(loaded, data, config.data, device)
    loaded.module.to(device)
    probe_inputs = adapter.encode(0, min(2, len(data)))
    try:
        with torch.no_grad():
            output = adapter.call(loaded.module, probe_inputs)
    except AuditorError:
        raise
    except Exception as err:
        shapes = {k: tuple(v.shape) for k, v in probe_inputs.items()}
        message = " ".join(str(err).split())[:300]
        hint = _image_mode_hint(message, config.data.image_mode) \
            if data.kind == "images" and loaded.image_processor is None else ""
        raise DataError(f"the model rejected the data (inputs {shapes}): {type(err).__name__}: {message}"
                        f"{hint}") from None
    scores = adapter.scores(output, probe_inputs)
    n_outputs = int(scores.shape[1])
    if judges is not None:
        _check_judges(judges, scores, adapter, probe_inputs, device, config.batch_size)
    if task is None:
        task = "classification" if loaded.has_head else "embedding"
    modality: Modality = "text" if data.kind == "text" else (
        "image" if data.kind == "images" or (data.arrays is not None and data.arrays.ndim >= 4) else "tabular")
    if task == "generation":
        modality = "noise"
    labels = None
    class_names = loaded.class_names[:n_outputs] if task == "classification" else []
    if data.labels is not None and task == "classification":
        indices, class_names = map_labels(data.labels, n_outputs=n_outputs, model_names=loaded.class_names)
        labels = torch.tensor(indices, dtype=torch.long)
    if task == "classification" and not class_names:
        class_names = [str(i) for i in range(max(n_outputs, 2))]
    if judges is not None:
        class_names = judges.class_names
    return Subject(loaded=loaded, data=data, adapter=adapter, device=device, modality=modality, task=task,
                   n_outputs=n_outputs, labels=labels, class_names=class_names, judges=judges)


def _check_judges(judges: Judges, scores: torch.Tensor, adapter: ModelAdapter, inputs: dict[str, torch.Tensor],
                  device: torch.device, batch_size: int) -> None:
    """The judges read the generator's first samples, or the audit stops with what they said (exit 2)."""
    judges.to(device)
    assert adapter.sample_shape is not None
    try:
        verdicts = judges.score(scores.detach(), adapter.sample_shape, inputs.get("y"), batch_size=batch_size,
                                device=device)
    except Exception as err:
        message = " ".join(str(err).split())[:300]
        raise DataError(f"the judges could not read the generator's samples (shape {tuple(adapter.sample_shape)}): "
                        f"{type(err).__name__}: {message}") from None
    if verdicts.probabilities is not None and not judges.class_names:
        judges.class_names = [str(i) for i in range(verdicts.probabilities.shape[1])]


_CHANNELS = re.compile(r"to have (\d+) channels?, but got (\d+) channels?")


def _image_mode_hint(message: str, mode: str) -> str:
    """What to pass when folder images were read with the wrong number of channels for the model."""
    read_as = "RGB (3 channels)" if mode == "RGB" else "grey (1 channel)"
    other = "L" if mode == "RGB" else "RGB"
    found = _CHANNELS.search(message)
    if found and int(found.group(1)) == (1 if mode == "RGB" else 3):
        return f"; the model takes {found.group(1)}-channel input but the images were read as {read_as}: " \
               f"pass --image-mode {other}"
    return f"; the images were read as {read_as}: if the model takes {'grey' if mode == 'RGB' else 'colour'} " \
           f"images, pass --image-mode {other}"


def _as_int(label: RawLabel) -> int | None:
    if isinstance(label, int):
        return label
    text = label.strip()
    return int(text) if text.lstrip("-").isdigit() else None


def map_labels(raw: list[RawLabel], *, n_outputs: int, model_names: list[str]) -> tuple[list[int], list[str]]:
    """Class indices for raw labels, and the class names to show.

    Integer labels (or digit strings) are indices; names are matched to the model's own class names when
    it has them (case-insensitive), else sorted and numbered. A label the model has no class for is an
    error, not a silently wrong accuracy.
    """
    n_classes = max(n_outputs, 2) if n_outputs == 1 else n_outputs  # one logit = binary (sigmoid)
    as_ints = [_as_int(label) for label in raw]
    lowered = {name.lower(): i for i, name in enumerate(model_names)}
    if all(v is not None for v in as_ints) and not (
        model_names and all(str(label).strip().lower() in lowered for label in raw)
    ):
        indices = [int(v) for v in as_ints]  # type: ignore[arg-type]  # all checked not None above
        bad = sorted({i for i in indices if not 0 <= i < n_classes})
        if bad:
            raise DataError(f"labels {bad[:5]} have no class: the model has {n_classes} classes (0..{n_classes - 1})")
        names = model_names[:n_classes] if len(model_names) >= n_classes else [str(i) for i in range(n_classes)]
        return indices, names
    if model_names:
        unknown = sorted({str(label) for label in raw if str(label).strip().lower() not in lowered})
        if unknown:
            raise DataError(f"labels {unknown[:5]} are not classes of the model (its classes: {model_names})")
        return [lowered[str(label).strip().lower()] for label in raw], model_names[:n_classes]
    names = sorted({str(label) for label in raw})
    if len(names) > n_classes:
        raise DataError(f"the data has {len(names)} label values {names[:6]}, but the model has only "
                        f"{n_classes} classes")
    order = {name: i for i, name in enumerate(names)}
    return [order[str(label)] for label in raw], names + [str(i) for i in range(len(names), n_classes)]
