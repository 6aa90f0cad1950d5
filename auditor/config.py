"""What an audit is asked to do, read from TOML or built in Python; frozen and strict (extra="forbid")."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from auditor.errors import ConfigError

_STRICT = ConfigDict(frozen=True, extra="forbid")


class ModelSpec(BaseModel):
    """Where the model comes from."""

    model_config = _STRICT | ConfigDict(protected_namespaces=())

    path: str | None = None
    """A Hugging Face model directory, or a factory `package.module:function` returning an nn.Module."""
    weights: str | None = None
    """Weights for a factory model: .safetensors, or a state_dict file read with weights_only=True."""
    head: str | None = None
    """For a bare encoder: a .safetensors linear head (`weight`, `bias`) applied to the pooled output."""
    trust_pickle: bool = False
    """Allow unpickling a full model file. Only for files you trust: unpickling runs code."""
    name: str | None = None
    """Display name in the report (default: the model's class; the directory or factory is its source)."""


class DataSpec(BaseModel):
    """Where the audit data comes from and how to read it."""

    model_config = _STRICT

    path: str | None = None
    """An image folder (one sub-folder per class), a .npz with `x` and `y`, or a .csv / .jsonl text file."""
    text_column: str = "text"
    label_column: str | None = "label"
    """None: the data has no labels (no performance section)."""
    max_samples: int = Field(512, ge=1)
    max_length: int = Field(128, ge=8, description="Token limit for text inputs.")
    image_size: int | None = Field(None, ge=4, description="Resize images to this square size (factory models).")
    image_mode: Literal["RGB", "L"] = "RGB"


class InventoryParams(BaseModel):
    """Thresholds of the module inventory."""

    model_config = _STRICT

    dead_unit_warn_fraction: float = Field(0.25, ge=0.0, le=1.0)
    """Warn when more than this fraction of a module's units never activate on the audit data."""
    dead_unit_min_units: int = Field(4, ge=1)
    """Ignore modules with fewer output units than this (a 2-logit head is not 'dead')."""


class PerformanceParams(BaseModel):
    """Thresholds of the performance section."""

    model_config = _STRICT

    near_chance_alpha: float = Field(0.001, gt=0.0, lt=1.0)
    """Fail unless a one-sided binomial test rejects 'no better than the majority class' at this level."""
    near_chance_margin: float = Field(0.02, ge=0.0, le=1.0)
    """... and unless accuracy beats the majority-class rate by at least this much."""
    calibration_bins: int = Field(15, ge=2)
    ece_warn: float = Field(0.1, ge=0.0, le=1.0)


class AuditConfig(BaseModel):
    """Everything `auditor run` needs. Command-line options override the file's values."""

    model_config = _STRICT | ConfigDict(protected_namespaces=())

    model: ModelSpec = ModelSpec()
    data: DataSpec = DataSpec()
    out: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(32, ge=1)
    seed: int = 0
    analyses: tuple[str, ...] | None = None
    """Analysis ids to run (default: all that apply to the model)."""
    inventory: InventoryParams = InventoryParams()
    performance: PerformanceParams = PerformanceParams()

    def with_overrides(self, overrides: dict[str, Any]) -> AuditConfig:
        """Returns a copy with dotted keys (`"data.max_samples"`) replaced; None values are skipped."""
        raw = self.model_dump()
        for dotted, value in overrides.items():
            if value is None:
                continue
            node = raw
            *parents, leaf = dotted.split(".")
            for part in parents:
                node = node[part]
            node[leaf] = value
        return validate_config(raw, source="command line")


def validate_config(raw: dict[str, Any], *, source: str) -> AuditConfig:
    """Builds an AuditConfig, turning pydantic's errors into one readable ConfigError line."""
    try:
        return AuditConfig.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"invalid configuration in {source}: {problems}") from None


def load_config(path: str | Path) -> AuditConfig:
    """Reads an audit.toml; relative paths in it are taken relative to the file's folder."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from None
    base = path.resolve().parent
    for section, key in (("model", "weights"), ("model", "head"), ("data", "path"), (None, "out")):
        table = raw.get(section, {}) if section else raw
        if isinstance(table, dict) and isinstance(table.get(key), str):
            table[key] = str((base / table[key]).resolve()) if not Path(table[key]).is_absolute() else table[key]
    model_table = raw.get("model", {})
    if isinstance(model_table, dict) and isinstance(model_table.get("path"), str):
        candidate = model_table["path"]
        # A factory spec ("pkg.mod:fn") is not a path; a directory relative to the file is.
        if (base / candidate).exists() and not Path(candidate).is_absolute():
            model_table["path"] = str((base / candidate).resolve())
    return validate_config(raw, source=str(path))
