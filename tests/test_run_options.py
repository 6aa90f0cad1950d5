"""`auditor run`'s options are one typed object; applied, they land on the config keys they name."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditor.cli.options import RunOptions
from auditor.config import AuditConfig
from auditor.errors import ConfigError


def test_options_not_given_leave_the_config_as_it_is() -> None:
    config = AuditConfig(seed=3, batch_size=7)
    assert RunOptions().apply(config) == config


def test_each_option_lands_on_its_key() -> None:
    config = RunOptions(model="pkg.nets:build", weights=Path("w.safetensors"), data=Path("d.csv"), max_tokens=64,
                        unlabeled=True, out=Path("out"), seed=5, analyses=("inventory", "weights"),
                        skip=("trust",)).apply(AuditConfig())
    assert (config.model.path, config.model.weights, config.data.path) == ("pkg.nets:build", "w.safetensors", "d.csv")
    assert (config.data.max_length, config.data.label_column, config.out, config.seed) == (64, None, "out", 5)
    assert (config.analyses.only, config.analyses.skip) == (("inventory", "weights"), ("trust",))
    assert config.generator is None


def test_a_judge_makes_the_model_a_generator_and_keeps_the_config_file_s_other_judge() -> None:
    base = RunOptions(classifier="pkg.nets:build").apply(AuditConfig())
    config = RunOptions(discriminator="pkg.gan:d", discriminator_weights=Path("d.pt"), noise_dim=16).apply(base)
    assert config.generator is not None
    assert (config.generator.discriminator.path, config.generator.discriminator.weights) == ("pkg.gan:d", "d.pt")
    assert config.generator.classifier is not None and config.generator.classifier.path == "pkg.nets:build"
    assert config.generator.noise_dim == 16


def test_a_bad_value_names_its_key() -> None:
    with pytest.raises(ConfigError, match=r"command line: data\.image_mode"):
        RunOptions(image_mode="CMYK").apply(AuditConfig())
