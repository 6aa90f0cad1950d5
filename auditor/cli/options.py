"""`auditor run`'s options as one typed object, and how they change the configuration."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auditor.config import AuditConfig, validate_config


@dataclass(frozen=True)
class RunOptions:
    """What the command line says of the audit; None (or False) means "not given": the config's value stays.

    `apply` returns the configuration with them in place, validated once (a bad value is a `ConfigError`
    naming its key, from "command line"). The generator options (`discriminator`, `classifier`, their
    weights, `noise_dim`) make the model a generator.
    """

    model: str | None = None
    weights: Path | None = None
    head: Path | None = None
    trust_pickle: bool = False
    name: str | None = None
    data: Path | None = None
    text_column: str | None = None
    label_column: str | None = None
    unlabeled: bool = False
    max_samples: int | None = None
    max_tokens: int | None = None
    image_size: int | None = None
    image_mode: str | None = None
    out: Path | None = None
    device: str | None = None
    batch_size: int | None = None
    seed: int | None = None
    threads: int | None = None
    analyses: tuple[str, ...] | None = None
    skip: tuple[str, ...] | None = None
    executor: str | None = None
    ray_address: str | None = None
    discriminator: str | None = None
    discriminator_weights: Path | None = None
    classifier: str | None = None
    classifier_weights: Path | None = None
    noise_dim: int | None = None

    def apply(self, config: AuditConfig) -> AuditConfig:
        """The configuration with every given option in place."""
        raw = config.model_dump()
        _update(raw["model"], path=self.model, weights=_text(self.weights), head=_text(self.head),
                trust_pickle=self.trust_pickle or None, name=self.name)
        _update(raw["data"], path=_text(self.data), text_column=self.text_column, label_column=self.label_column,
                max_samples=self.max_samples, max_length=self.max_tokens, image_size=self.image_size,
                image_mode=self.image_mode)
        if self.unlabeled:
            raw["data"]["label_column"] = None
        _update(raw, out=_text(self.out), device=self.device, batch_size=self.batch_size, seed=self.seed,
                threads=self.threads)
        _update(raw["analyses"], only=_list(self.analyses), skip=_list(self.skip))
        _update(raw["executor"], kind=self.executor, address=self.ray_address)
        if self._makes_a_generator():
            spec = raw.get("generator") or {"discriminator": {}}
            for role, path, weights in (("discriminator", self.discriminator, self.discriminator_weights),
                                        ("classifier", self.classifier, self.classifier_weights)):
                if path is not None or weights is not None:
                    spec[role] = _update(spec.get(role) or {}, path=path, weights=_text(weights))
            _update(spec, noise_dim=self.noise_dim)
            raw["generator"] = spec
        return validate_config(raw, source="command line")

    def _makes_a_generator(self) -> bool:
        return any(option is not None for option in (self.discriminator, self.discriminator_weights, self.classifier,
                                                     self.classifier_weights, self.noise_dim))

def _update(table: dict[str, Any], **values: Any) -> dict[str, Any]:
    """`table` with the values that are not None put in."""
    table.update({key: value for key, value in values.items() if value is not None})
    return table


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _list(ids: tuple[str, ...] | None) -> list[str] | None:
    return None if ids is None else list(ids)
