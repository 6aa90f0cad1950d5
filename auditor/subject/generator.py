"""Loading a generator subject: the generator, its fixed noise batch, and its judges.

The noise is drawn once with the audit's seed (or read from a .npz), so every ablated copy of the
generator is fed the very same batch and its samples can be compared one by one with the intact ones.
A conditional generator gets, as its second input, the class each sample asks for: 0, 1, ..., K-1 in turn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from auditor.config import AuditConfig, GeneratorSpec, ModelSpec
from auditor.errors import ConfigError, DataError, ModelLoadError
from auditor.subject.build import build_subject
from auditor.subject.subject import Subject
from auditor.subject.data import AuditData, check_finite
from auditor.subject.judges import Judges
from auditor.subject.loading import LoadedModel, load_model

_NOISE_ATTRIBUTES = ("noise_dim", "latent_dim", "z_dim", "nz")


def noise_dim_of(module: torch.nn.Module, spec: GeneratorSpec) -> int:
    """The noise length: `[generator] noise_dim`, else the generator's own attribute."""
    if spec.noise_dim is not None:
        return spec.noise_dim
    for name in _NOISE_ATTRIBUTES:
        value = getattr(module, name, None)
        if isinstance(value, int) and value > 0:
            return value
    raise DataError(f"the generator {type(module).__name__} has none of the attributes {', '.join(_NOISE_ATTRIBUTES)}: "
                    "set [generator] noise_dim")


def classes_of(module: torch.nn.Module, spec: GeneratorSpec) -> int:
    """How many classes a conditional generator takes (0: unconditional)."""
    if spec.classes is not None:
        return spec.classes
    value = getattr(module, "n_classes", None)
    return value if isinstance(value, int) and value > 0 else 0


def draw_noise(n: int, dim: int, *, kind: str, seed: int) -> np.ndarray:
    """(n, dim) float32 noise, standard normal or uniform on [-1, 1], from `seed`."""
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((n, dim)) if kind == "normal" else rng.uniform(-1.0, 1.0, (n, dim))
    return values.astype(np.float32)


def noise_data(config: AuditConfig, *, dim: int, classes: int) -> AuditData:
    """The fixed noise batch: drawn with the seed, or read from `[data] path` (.npz: `x`, optional `y`)."""
    spec = config.generator
    assert spec is not None
    n = config.data.max_samples
    if not config.data.path:
        x = draw_noise(n, dim, kind=spec.noise, seed=config.seed)
        conditions = np.arange(n, dtype=np.int64) % classes if classes else None
        return AuditData(kind="arrays", source=f"{spec.noise} noise ({n} x {dim}, seed {config.seed})", arrays=x,
                         conditions=conditions)
    path = Path(config.data.path)
    if path.suffix != ".npz" or not path.is_file():
        raise DataError(f"a generator's data is a .npz of noise (`x`, and `y` for the classes asked for), not {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as err:
        raise DataError(f"{path} is not a readable .npz of plain arrays: {type(err).__name__}: {err}") from None
    if "x" not in arrays:
        raise DataError(f"{path} has arrays {sorted(arrays)}; expected `x`, the noise (and `y`, the classes asked for)")
    x = arrays["x"]
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{path}: `x` must be a numeric (samples, {dim}) array of noise")
    if x.shape[1] != dim:
        raise DataError(f"{path}: the noise has length {x.shape[1]}, but the generator takes {dim}")
    check_finite(x, source=str(path))
    y = arrays.get("y")
    conditions = None
    if classes:
        if y is None:
            conditions = np.arange(len(x), dtype=np.int64) % classes
        elif y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= classes:
            raise DataError(f"{path}: `y` must hold one class in 0..{classes - 1} per noise vector")
        else:
            conditions = y.astype(np.int64)
    keep = slice(0, min(n, len(x)))
    return AuditData(kind="arrays", source=str(path), arrays=x[keep].astype(np.float32),
                     conditions=conditions[keep] if conditions is not None else None)


def _load_judge(spec: ModelSpec, role: str) -> LoadedModel:
    if not spec.path:
        raise ConfigError(f"[generator.{role}] needs a path: a factory 'package.module:function' (with weights) "
                          "or a Hugging Face model directory")
    try:
        loaded = load_model(spec)
    except ModelLoadError as err:
        raise ModelLoadError(f"the {role}: {err}") from None
    loaded.module.eval()
    return loaded


def build_generator_subject(generator: LoadedModel, discriminator: LoadedModel, classifier: LoadedModel | None,
                            config: AuditConfig) -> Subject:
    """A generator subject from loaded models: the generator (no head: its blocks are all its own), its noise
    batch, and its judges, checked against its first samples."""
    spec = config.generator
    assert spec is not None
    generator.generates, generator.has_head = True, False
    data = noise_data(config, dim=noise_dim_of(generator.module, spec), classes=classes_of(generator.module, spec))
    judges = Judges(discriminator=discriminator, output=spec.discriminator_output, classifier=classifier,
                    class_names=list(classifier.class_names) if classifier is not None else [])
    return build_subject(generator, data, config, task="generation", judges=judges)


def load_generator_subject(config: AuditConfig) -> Subject:
    """The generator, discriminator and classifier that `config` names, loaded as any model is (factories
    with weights, Hugging Face directories), as one subject."""
    spec = config.generator
    assert spec is not None
    return build_generator_subject(
        load_model(config.model), _load_judge(spec.discriminator, "discriminator"),
        _load_judge(spec.classifier, "classifier") if spec.classifier is not None else None, config)


__all__ = ["build_generator_subject", "classes_of", "draw_noise", "load_generator_subject", "noise_data",
           "noise_dim_of"]
