"""Probe sets: the samples a probe reads and the properties it is asked about.

- the audit data's own labels (for a bare encoder too: there, this is what its labels are for);
- text models: the built-in sentiment sentences (`sentiment_set.py`);
- image models: gratings generated at the model's input size, labelled by orientation, spatial frequency
  and, for colour models, dominant colour;
- a labelled file named by `[analyses.probes] data`: CSV/JSONL for text (a text column and property
  columns), a .npz for images and arrays (`x` as the model takes it, and one label array per property).

Every set but the audit data is an input of its own, not audit data: the probes run one extra capture of
it (and one more on the re-initialized network).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from auditor.errors import ConfigError, DataError
import auditor.analyses.probes.sentiment_set as sentiment_set
from auditor.subject import Subject
from auditor.subject.adapters import ModelAdapter
from auditor.subject.data import AuditData, read_table

if TYPE_CHECKING:
    from auditor.engine.analysis import PlanContext

MAX_CLASSES = 50
"""A column with more distinct values than this (or than half its samples) is not a class label."""


@dataclass(frozen=True)
class Property:
    """One property to probe for: a class per sample."""

    name: str
    labels: np.ndarray
    """(n,) class indices 0..K-1, into `classes`."""
    classes: list[str]
    builtin: bool
    """Asked of every model of the modality (not the user's own labels): its findings are milder."""
    head_classes: np.ndarray | None = None
    """(K,) the head output of each class, when the classes are the model's own: the head lens applies."""


@dataclass(frozen=True)
class ProbeSet:
    """Samples and the properties asked of them. `data` None: the audit data (the shared capture has it)."""

    name: str
    description: str
    samples: int
    properties: list[Property]
    keys: np.ndarray | None
    """(n,) a hash of each sample's content: the probes' folds follow it, not the file's order."""
    data: AuditData | None = None


def content_keys(data: AuditData) -> np.ndarray:
    """A 64-bit hash of each sample's content (text, array bytes, or image path)."""
    def digest(raw: bytes) -> int:
        return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little")

    if data.texts is not None:
        values = [digest(t.encode("utf-8")) for t in data.texts]
    elif data.arrays is not None:
        values = [digest(np.ascontiguousarray(row).tobytes()) for row in data.arrays]
    else:
        assert data.image_paths is not None
        values = [digest(str(p).encode("utf-8")) for p in data.image_paths]
    return np.array(values, dtype=np.uint64)


def encode_labels(raw: list[str] | list[int] | list[str | int]) -> tuple[np.ndarray, list[str]]:
    """Class indices and names: integers sorted numerically, other labels as sorted strings."""
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in raw):
        values = sorted({int(v) for v in raw})
        index = {v: i for i, v in enumerate(values)}
        return np.array([index[int(v)] for v in raw], dtype=np.int64), [str(v) for v in values]
    names = sorted({str(v) for v in raw})
    index_s = {v: i for i, v in enumerate(names)}
    return np.array([index_s[str(v)] for v in raw], dtype=np.int64), names


def head_mapping(classes: list[str], ctx: PlanContext) -> np.ndarray | None:
    """The head output of each class, when every class is one of the model's own classes (by name)."""
    if ctx.subject.task != "classification" or not ctx.subject.class_names:
        return None
    own = {name.lower(): i for i, name in enumerate(ctx.subject.class_names)}
    if not all(c.lower() in own for c in classes):
        return None
    return np.array([own[c.lower()] for c in classes], dtype=np.int64)


def audit_labels(ctx: PlanContext) -> ProbeSet | None:
    """The audit data's labels, or None when it has none."""
    subject = ctx.subject
    name = ctx.config.data.label_column or "label"
    if subject.labels is not None:
        present = sorted(set(subject.labels.tolist()))
        index = {c: i for i, c in enumerate(present)}
        labels = np.array([index[c] for c in subject.labels.tolist()], dtype=np.int64)
        classes = [subject.class_names[c] if c < len(subject.class_names) else str(c) for c in present]
        prop = Property(name, labels, classes, builtin=False, head_classes=np.array(present, dtype=np.int64))
    elif subject.data.labels is not None:
        labels, classes = encode_labels(subject.data.labels)
        prop = Property(name, labels, classes, builtin=False, head_classes=head_mapping(classes, ctx))
    else:
        return None
    return ProbeSet(name="audit data", description=f"the audit data's {len(subject)} samples", samples=len(subject),
                    properties=[prop], keys=content_keys(subject.data))


def builtin_sentiment(ctx: PlanContext) -> ProbeSet:
    """The shipped sentiment sentences (text models); the head lens applies where the model's classes are
    named negative and positive."""
    rows = sentiment_set.read_rows()
    texts = [t for t, _ in rows]
    labels, classes = encode_labels([y for _, y in rows])
    data = AuditData(kind="text", source="built-in sentiment probe set", texts=texts)
    prop = Property("sentiment", labels, classes, builtin=True, head_classes=head_mapping(classes, ctx))
    return ProbeSet(name="sentiment sentences", samples=len(texts), properties=[prop], keys=content_keys(data),
                    description=f"{len(texts)} built-in sentences with negation and contrast", data=data)


ORIENTATIONS = (0, 45, 90, 135)
COLOURS = ("red", "green", "blue")


def input_statistics(ctx: PlanContext) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    """(channels, height, width) of the model's image input and the per-channel mean and std of the audit data's
    first batch, as the model receives them (after any image processor)."""
    batch = next(ctx.subject.batches(ctx.config.batch_size))
    images = [v for v in batch.inputs.values() if v.is_floating_point() and v.dim() == 4]
    if not images:
        raise DataError("the image model's input is not a (batch, channels, height, width) tensor")
    x = images[0].detach().double().cpu()
    mean = x.mean(dim=(0, 2, 3)).numpy()
    std = x.std(dim=(0, 2, 3)).numpy() if x.shape[0] * x.shape[2] * x.shape[3] > 1 else np.ones(x.shape[1])
    return tuple(int(s) for s in x.shape[1:]), mean, np.where(std > 1e-6, std, 1.0)


def gratings(shape: tuple[int, ...], mean: np.ndarray, std: np.ndarray, *, seed: int,
             per_class: int = 36) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, list[str]]]]:
    """Sine gratings at the input's size and scale, with their orientation, spatial frequency and (colour
    inputs) dominant colour, in a balanced factorial design with random phase and contrast."""
    channels, height, width = shape
    size = min(height, width)
    periods = sorted({max(2.5, round(size / c, 2)) for c in (1.5, 4.0, 10.0)}, reverse=True)
    frequency_names = ["low", "mid", "high"][:len(periods)] if len(periods) == 3 else ["low", "high"][:len(periods)]
    colours = COLOURS if channels == 3 else ("",)
    combos = [(o, f, c) for o in range(len(ORIENTATIONS)) for f in range(len(periods)) for c in range(len(colours))]
    repeats = max(1, math.ceil(per_class * len(ORIENTATIONS) / len(combos)))
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    images, labels = [], []
    for o, f, c in combos * repeats:
        angle = math.radians(ORIENTATIONS[o])
        phase, contrast = rng.uniform(0, 2 * math.pi), rng.uniform(0.6, 1.0)
        wave = np.cos(2 * math.pi * (xx * math.cos(angle) + yy * math.sin(angle)) / periods[f] + phase)
        if channels == 3:
            gain = np.full(3, 0.25)
            gain[c] = 1.0
            image = np.stack([gain[k] * (contrast * wave + 0.8) - 0.5 for k in range(3)])
        else:
            image = np.broadcast_to(contrast * wave, (channels, height, width))
        images.append(mean[:, None, None] + 1.2 * std[:, None, None] * image)
        labels.append((o, f, c))
    x = np.stack(images).astype(np.float32)
    y = np.array(labels, dtype=np.int64)
    props = {"orientation": (y[:, 0], [f"{a}°" for a in ORIENTATIONS]),
             "frequency": (y[:, 1], frequency_names)}
    if channels == 3:
        props["colour"] = (y[:, 2], list(COLOURS))
    return x, props


def builtin_gratings(ctx: PlanContext) -> ProbeSet:
    """Gratings at the model's input size (image models)."""
    shape, mean, std = input_statistics(ctx)
    x, props = gratings(shape, mean, std, seed=ctx.config.seed)
    properties = [Property(name, labels, classes, builtin=True) for name, (labels, classes) in props.items()]
    data = AuditData(kind="arrays", source="generated gratings", arrays=x)
    return ProbeSet(name="gratings", samples=len(x), properties=properties, keys=None, data=data,
                    description=f"{len(x)} generated gratings of {shape[1]}×{shape[2]} pixels")


def user_file(ctx: PlanContext, path: str, *, columns: tuple[str, ...], text_column: str | None,
              max_samples: int) -> ProbeSet:
    """A labelled file of extra inputs: CSV/JSONL for text models, .npz for the others."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"[analyses.probes] data: file not found: {file}")
    if ctx.subject.modality == "text":
        text_col = text_column or ctx.config.data.text_column
        header, rows = read_table(file)
        if text_col not in header:
            raise DataError(f"{file} has no text column {text_col!r} (columns: {header})")
        wanted = list(columns) or [c for c in header if c != text_col]
        texts = [str(r.get(text_col, "")) for r in rows]
        if any(not t.strip() for t in texts):
            raise DataError(f"{file}: every row needs a non-empty {text_col!r}")
        data = AuditData(kind="text", source=str(file), texts=texts)
        raw: dict[str, list[str | int | None]] = {c: [r.get(c) for r in rows] for c in wanted}
    else:
        if file.suffix != ".npz":
            raise ConfigError(f"[analyses.probes] data for a {ctx.subject.modality} model must be a .npz "
                              f"(x and label arrays), not {file.name}")
        with np.load(file, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        if "x" not in arrays:
            raise DataError(f"{file} has arrays {sorted(arrays)}; expected 'x' and one array per property")
        x = arrays.pop("x").astype(np.float32)
        expected = tuple(ctx.subject.adapter.encode(0, 1)[_first_key(ctx)].shape[1:])
        if tuple(x.shape[1:]) != expected:
            raise DataError(f"{file}: 'x' has samples of shape {tuple(x.shape[1:])}; the model takes {expected}")
        wanted = list(columns) or [k for k, v in arrays.items() if v.shape == (len(x),)]
        data = AuditData(kind="arrays", source=str(file), arrays=x)
        raw = {}
        for c in wanted:
            if c not in arrays or arrays[c].shape != (len(x),):
                raise DataError(f"{file}: no label array {c!r} of shape ({len(x)},)")
            raw[c] = [int(v) if np.issubdtype(arrays[c].dtype, np.integer) else str(v) for v in arrays[c].tolist()]
    if not wanted:
        raise DataError(f"{file} holds no property to probe (a column or array besides the inputs)")
    missing = [c for c in wanted if c not in raw or any(v is None or str(v).strip() == "" for v in raw[c])]
    if missing:
        raise DataError(f"{file}: property {missing[0]!r} is missing or has empty values")
    keep = _subsample(len(data), max_samples, seed=ctx.config.seed)
    if keep is not None:
        data._take(keep.tolist())
        raw = {c: [v[i] for i in keep] for c, v in raw.items()}
    properties = []
    for c, values in raw.items():
        labels, classes = encode_labels([v if isinstance(v, int) else str(v).strip() for v in values])
        if len(classes) > min(MAX_CLASSES, len(labels) // 2):
            raise DataError(f"{file}: property {c!r} has {len(classes)} distinct values in {len(labels)} samples; "
                            "probes classify, so a property must be a class label")
        properties.append(Property(c, labels, classes, builtin=False, head_classes=head_mapping(classes, ctx)))
    return ProbeSet(name=file.name, samples=len(data), properties=properties, keys=content_keys(data), data=data,
                    description=f"{len(data)} samples of {file.name} ({', '.join(raw)})")


def _first_key(ctx: PlanContext) -> str:
    inputs = ctx.subject.adapter.encode(0, 1)
    return next(k for k, v in inputs.items() if v.is_floating_point())


def _subsample(n: int, cap: int, *, seed: int) -> np.ndarray | None:
    if n <= cap:
        return None
    return np.sort(np.random.default_rng(seed).permutation(n)[:cap])


def probe_subject(subject: Subject, data: AuditData) -> Subject:
    """The same model fed other inputs: a probe set is captured like audit data, but is none."""
    adapter = ModelAdapter(subject.loaded, data, subject.adapter.spec, subject.device)
    return dataclasses.replace(subject, data=data, adapter=adapter, labels=None, _encoded={})


def unique_names(sets: list[ProbeSet]) -> list[ProbeSet]:
    """Properties of different sets with one name get their set's name in front (`reviews.csv:sentiment`)."""
    seen: dict[str, int] = {}
    for s in sets:
        for p in s.properties:
            seen[p.name] = seen.get(p.name, 0) + 1
    out = []
    for s in sets:
        props = [dataclasses.replace(p, name=f"{s.name}:{p.name}") if seen[p.name] > 1 and s.data is not None
                 and not p.builtin else p for p in s.properties]
        out.append(dataclasses.replace(s, properties=props))
    return out


def to_tensor(x: np.ndarray, like: torch.nn.Module) -> torch.Tensor:
    """A representation as the head's dtype and device, for the head lens."""
    parameter = next(like.parameters(), None)
    tensor = torch.from_numpy(np.ascontiguousarray(x))
    return tensor.to(device=parameter.device, dtype=parameter.dtype) if parameter is not None else tensor


__all__ = ["ProbeSet", "Property", "audit_labels", "builtin_gratings", "builtin_sentiment", "content_keys",
           "encode_labels", "gratings", "head_mapping", "probe_subject", "unique_names", "user_file"]
