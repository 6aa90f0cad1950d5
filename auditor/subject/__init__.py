"""Stage 1, load subject: the model, the audit data and the task, checked against each other."""

from __future__ import annotations

from auditor.config import AuditConfig, DataSpec
from auditor.subject.build import build_subject, data_free_subject, map_labels, resolve_device
from auditor.subject.data import AuditData, load_data
from auditor.subject.loading import LoadedModel, load_model
from auditor.subject.subject import ENCODED_CACHE_BYTES, Batch, Modality, Subject
from auditor.subject.task import Task, TaskHead

__all__ = ["ENCODED_CACHE_BYTES", "Batch", "Modality", "Subject", "Task", "TaskHead", "build_subject",
           "data_free_subject", "load_subject", "map_labels", "read_data", "resolve_device"]


def load_subject(config: AuditConfig) -> Subject:
    """Loads the model and the data that `config` names and checks them against each other; a generator
    (`[generator]`) with its noise and its judges."""
    if config.generator is not None:
        from auditor.subject.generator import load_generator_subject  # noise, judges: only for a generator

        return load_generator_subject(config)
    loaded = load_model(config.model)
    if config.data.path is None:
        return data_free_subject(loaded, config)
    return build_subject(loaded, read_data(loaded, config), config)


def read_data(loaded: LoadedModel, config: AuditConfig) -> AuditData:
    """The audit data `config` names, for `loaded`. A language model's labels are no targets (its task is the next
    token) but properties the probes read: its data may lack the default `label` column (one the config names
    otherwise must be there)."""
    optional = loaded.causal_lm and config.data.label_column == DataSpec.model_fields["label_column"].default
    return load_data(config.data, seed=config.seed, labels_optional=optional)
