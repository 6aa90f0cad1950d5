"""Building a subject: one probe forward on two samples decides the task and maps the labels."""

from __future__ import annotations

import re

import torch

from auditor.config import AuditConfig
from auditor.errors import AuditorError, DataError
from auditor.subject.adapters import ModelAdapter
from auditor.subject.data import AuditData, RawLabel
from auditor.subject.judges import Judges
from auditor.subject.loading import LoadedModel
from auditor.subject.subject import Modality, Subject
from auditor.subject.task import Task

def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise AuditorError("--device cuda was asked for, but torch sees no CUDA device")
    return torch.device(name)


def data_free_subject(loaded: LoadedModel, config: AuditConfig, *, task: Task | None = None) -> Subject:
    """A subject without audit data: the model alone, never called. Its task follows from the model (a head
    or not) unless given; its outputs and labels are unknown, so only analyses that read the weights run on it."""
    device = resolve_device(config.device)
    loaded.module.to(device)
    data = AuditData.none()
    return Subject(loaded=loaded, data=data, adapter=ModelAdapter(loaded, data, config.data, device), device=device,
                   modality="none", task=task or _default_task(loaded), n_outputs=0,
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
        task = _default_task(loaded)
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


def _default_task(loaded: LoadedModel) -> Task:
    if loaded.causal_lm:
        return "causal_lm"
    return "classification" if loaded.has_head else "embedding"


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
