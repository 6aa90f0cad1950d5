"""Stage 1, load subject: the model, the audit data and the task, checked against each other."""

from __future__ import annotations

from auditor.config import AuditConfig
from auditor.subject.build import build_subject, data_free_subject, map_labels, resolve_device
from auditor.subject.data import load_data
from auditor.subject.loading import load_model
from auditor.subject.subject import ENCODED_CACHE_BYTES, Batch, Modality, Subject
from auditor.subject.task import Task, TaskHead

__all__ = ["ENCODED_CACHE_BYTES", "Batch", "Modality", "Subject", "Task", "TaskHead", "build_subject",
           "data_free_subject", "load_subject", "map_labels", "resolve_device"]


def load_subject(config: AuditConfig) -> Subject:
    """Loads the model and the data that `config` names and checks them against each other; a generator
    (`[generator]`) with its noise and its judges."""
    if config.generator is not None:
        from auditor.subject.generator import load_generator_subject  # noise, judges: only for a generator

        return load_generator_subject(config)
    loaded = load_model(config.model)
    if config.data.path is None:
        return data_free_subject(loaded, config)
    spec = config.data.model_copy(update={"label_column": None}) if loaded.causal_lm else config.data
    return build_subject(loaded, load_data(spec, seed=config.seed), config)  # a language model reads no labels
