"""Building an AuditContext by hand: plan, capture with chosen needs, and hand it to analyses in tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from auditor.analyses import Analysis, AuditContext
from auditor.config import AuditConfig
from auditor.engine.executor import LocalExecutor
from auditor.walk.needs import Needs
from auditor.pipeline import _in_memory_data, _wrap_module, plan_subject
from auditor.progress import SilentProgress
from auditor.subject import build_subject


def make_context(model: nn.Module, x: torch.Tensor | Any, y: torch.Tensor | Any | None, *, batch_size: int = 8,
                 needs: Needs | None = None, analyses: Sequence[Analysis] = (), tokenizer: Any = None,
                 config: AuditConfig | None = None) -> AuditContext:
    """Captures what `needs` and `analyses` ask for on (x, y) (or {"text": ..., "label": ...} with a tokenizer)."""
    config = config or AuditConfig(batch_size=batch_size)
    data = _in_memory_data(x if isinstance(x, dict) else (x, y), max_samples=100_000, seed=0)
    subject = build_subject(_wrap_module(model, tokenizer), data, config)
    plan_ctx, _ = plan_subject(subject, config)
    merged = Needs.union([needs or Needs(), *(a.needs(plan_ctx) for a in analyses)])
    executor = LocalExecutor(subject, plan_ctx.tree, batch_size=config.batch_size, progress=SilentProgress())
    return AuditContext.after(plan_ctx, capture=executor.capture(merged), executor=executor)


def make_generator_context(generator: nn.Module, discriminator: nn.Module, classifier: nn.Module | None = None, *,
                           samples: int = 48, batch_size: int = 16, analyses: Sequence[Analysis] = ()) -> AuditContext:
    """A generator subject (seeded noise, its judges) captured for `analyses`, as `auditor.audit_generator` does."""
    from auditor.config import GeneratorSpec, ModelSpec
    from auditor.subject.generator import build_generator_subject

    spec = GeneratorSpec(discriminator=ModelSpec(), classifier=ModelSpec() if classifier is not None else None)
    config = AuditConfig(batch_size=batch_size, generator=spec).with_overrides({"data.max_samples": samples})
    subject = build_generator_subject(_wrap_module(generator, None), _wrap_module(discriminator, None),
                                      _wrap_module(classifier, None) if classifier is not None else None, config)
    plan_ctx, _ = plan_subject(subject, config)
    merged = Needs.union([a.needs(plan_ctx) for a in analyses])
    executor = LocalExecutor(subject, plan_ctx.tree, batch_size=config.batch_size, progress=SilentProgress())
    return AuditContext.after(plan_ctx, capture=executor.capture(merged), executor=executor)
