"""What an audit is asked to do, read from TOML or built in Python; frozen and strict (extra="forbid")."""

from __future__ import annotations

import tomllib
import warnings
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from auditor.errors import ConfigError
from auditor.schema.cards import CardsConfig

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


class GeneratorSpec(BaseModel):
    """`[generator]`: the model is a generator (noise -> sample), judged by its discriminator and, optionally,
    a classifier trained on the real data. The noise batch has `[data] max_samples` samples drawn with the
    audit's seed, or is read from `[data] path` (a .npz: `x` the noise, `y` the classes asked for)."""

    model_config = _STRICT | ConfigDict(protected_namespaces=())

    discriminator: ModelSpec
    """The GAN's discriminator: a factory with weights, or a Hugging Face directory; higher = more real."""
    discriminator_output: Literal["logit", "probability"] = "logit"
    """What the discriminator returns: a logit (realness = its sigmoid) or a probability already."""
    classifier: ModelSpec | None = None
    """A classifier trained on the real data: confidence, class histogram and diversity of the samples."""
    noise_dim: int | None = Field(None, ge=1)
    """Length of the noise vector (default: the generator's `noise_dim`, `latent_dim`, `z_dim` or `nz`)."""
    noise: Literal["normal", "uniform"] = "normal"
    """Standard normal, or uniform on [-1, 1]."""
    classes: int | None = Field(None, ge=0)
    """A conditional generator: its number of classes; each sample asks for one, in turn (0..classes-1), as
    the generator's second input. Default: the generator's `n_classes` attribute, else 0 (unconditional)."""


class ExecutorSpec(BaseModel):
    """`[executor]`: where the audit's passes run: here (`local`), or on the actors of a Ray cluster (`ray`,
    needs `pip install "torch-auditor[ray]"`; docs/scale.md)."""

    model_config = _STRICT

    kind: Literal["local", "ray"] = "local"
    address: str | None = None
    """The Ray cluster: `auto` (the one this machine runs), `ray://host:10001` (Ray Client), `host:6379`;
    default: RAY_ADDRESS when set, else a cluster started here for the audit."""
    actors: int = Field(2, ge=1)
    """Actors, each holding one replica of the model."""
    cpus_per_actor: float = Field(1.0, gt=0)
    """CPUs Ray reserves for each actor; its torch uses as many threads (at least one)."""
    gpus_per_actor: float = Field(0.0, ge=0)
    """GPUs Ray reserves for each actor (the model then runs on its GPU)."""
    task_retries: int = Field(3, ge=0)
    """How often one task (a shard of the capture, a group of passes) is rerun on another actor after the actor
    running it died, before the audit fails."""


class AnalysesConfig(BaseModel):
    """`[analyses]`: which analyses run, and one `[analyses.<id>]` table of parameters per analysis.

    Each analysis validates its own table (an unknown key is an error naming it), so this model does not
    grow with every analysis.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    only: tuple[str, ...] | None = None
    """Analysis ids to run (default: every analysis that applies to the model)."""
    skip: tuple[str, ...] = ()
    """Analysis ids not to run."""

    @model_validator(mode="after")
    def _tables_are_tables(self) -> AnalysesConfig:
        for key, value in (self.model_extra or {}).items():
            if not isinstance(value, dict):
                raise ValueError(f"analyses.{key} must be a table of parameters ([analyses.{key}]), "
                                 f"not {type(value).__name__}")
        return self

    def table(self, analysis_id: str) -> dict[str, Any]:
        """The `[analyses.<id>]` table, empty when the config has none."""
        return dict((self.model_extra or {}).get(analysis_id) or {})

    def tables(self) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in (self.model_extra or {}).items()}


_OLD_TABLES = ("inventory", "performance")


def _migrate(raw: dict[str, Any]) -> dict[str, Any]:
    """Reads the forms of releases before 0.2, with a warning: a top-level `analyses = [...]` list (it
    cannot sit beside `[analyses.<id>]` tables in one TOML file) and `[inventory]` / `[performance]`."""
    raw = dict(raw)
    analyses = raw.get("analyses")
    if isinstance(analyses, (list, tuple)):
        warnings.warn("`analyses = [...]` is deprecated: write `[analyses]` with `only = [...]`",
                      FutureWarning, stacklevel=4)
        analyses = raw["analyses"] = {"only": list(analyses)}
    for old in _OLD_TABLES:
        if old in raw:
            table = raw.pop(old)
            warnings.warn(f"the [{old}] table is deprecated: write [analyses.{old}]", FutureWarning, stacklevel=4)
            analyses = raw["analyses"] = dict(analyses or {})
            if old in analyses:
                raise ValueError(f"both [{old}] and [analyses.{old}] are given; keep [analyses.{old}]")
            analyses[old] = table
    return raw


class AuditConfig(BaseModel):
    """Everything `auditor run` needs. Command-line options override the file's values."""

    model_config = _STRICT | ConfigDict(protected_namespaces=())

    model: ModelSpec = ModelSpec()
    data: DataSpec = DataSpec()
    out: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(32, ge=1)
    threads: int | None = Field(None, ge=1)
    """CPU threads for torch (default: OMP_NUM_THREADS when set, else the cores this process may use, or one
    where one batch measured as fast on one; see docs/speed.md)."""
    seed: int = 0
    generator: GeneratorSpec | None = None
    """Set when the model is a generator: its judges and its noise (see `GeneratorSpec`)."""
    analyses: AnalysesConfig = AnalysesConfig()
    executor: ExecutorSpec = ExecutorSpec()
    """`[executor]`: run the passes here or on a Ray cluster (docs/scale.md)."""
    cards: CardsConfig = CardsConfig()
    """`[cards]`: the module atlas's role thresholds (docs/atlas.md)."""

    @model_validator(mode="before")
    @classmethod
    def _read_old_forms(cls, raw: Any) -> Any:
        return _migrate(raw) if isinstance(raw, dict) else raw

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
    """Builds an AuditConfig, turning pydantic's errors into one readable ConfigError line.

    The `[analyses.<id>]` tables are kept as given: each analysis checks its own against its parameters
    (`auditor.pipeline.load_config` when a file is read, the plan before anything runs).
    """
    try:
        config = AuditConfig.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"invalid configuration in {source}: {problems}") from None
    return config


def read_config(path: str | Path) -> AuditConfig:
    """Reads an audit.toml; relative paths in it are taken relative to the file's folder. The analyses'
    own tables are not checked here (see `auditor.pipeline.load_config`)."""
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
    generator = raw.get("generator")
    judges = [generator.get(k) for k in ("discriminator", "classifier")] if isinstance(generator, dict) else []
    for model_table in [raw.get("model", {}), *judges]:
        if not isinstance(model_table, dict):
            continue
        for key in ("weights", "head"):
            if model_table is not raw.get("model") and isinstance(model_table.get(key), str) \
                    and not Path(model_table[key]).is_absolute():
                model_table[key] = str((base / model_table[key]).resolve())
        if isinstance(model_table.get("path"), str):
            candidate = model_table["path"]
            # A factory spec ("pkg.mod:fn") is not a path; a directory relative to the file is.
            if (base / candidate).exists() and not Path(candidate).is_absolute():
                model_table["path"] = str((base / candidate).resolve())
    return validate_config(raw, source=str(path))
