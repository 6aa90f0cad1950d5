"""The audit as one pass through clear stages:

    load subject -> plan (analyses, needs, costs) -> capture (one hooked pass per batch)
                 -> analyses (each reads the capture; may run passes of its own) -> findings

Rendering (HTML, PDF, JSON) is separate and pure: `auditor.save_report` / `auditor.report.renderers`.
"""

from __future__ import annotations

import platform
import random
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from auditor.analyses import ALL_ANALYSES, AuditContext, PlanContext, check_analysis_config, run_one
from auditor.config import AuditConfig, ExecutorSpec, read_config
from auditor.engine.capture import Capture
from auditor.engine.executor import Executor, LocalExecutor
from auditor.engine.plan import Plan, make_plan, stage_budgets
from auditor.engine.threads import ThreadChoice, choose_threads, torch_threads
from auditor.errors import ConfigError, DataError
from auditor.paths import portable_path
from auditor.progress import Progress, SilentProgress
from auditor.schema.report import AuditReport, BlockRow, Metadata, Section, decide_verdict
from auditor.subject import Subject, Task, build_subject, data_free_subject, load_subject, read_data
from auditor.subject.data import AuditData, cap_samples
from auditor.subject.fingerprint import data_fingerprint
from auditor.subject.loading import LoadedModel, ModelKind, is_causal_lm, load_model
from auditor.synthesis import with_cards
from auditor.walk.blocks import find_blocks
from auditor.walk.tree import ModuleTree


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def load_config(path: str | Path) -> AuditConfig:
    """Reads an audit.toml and checks it whole, every `[analyses.<id>]` table against its analysis's
    parameters, before anything loads; relative paths in it are taken relative to the file's folder."""
    config = read_config(path)
    check_analysis_config(config.analyses, source=str(path))
    return config


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_audit(config: AuditConfig, *, progress: Progress | None = None,
              notes: Mapping[str, Any] | None = None) -> AuditReport:
    """Audits the model and data that `config` names (what `auditor run` does, minus writing files)."""
    seed_everything(config.seed)
    started = time.perf_counter()
    subject = load_subject(config)
    return audit_subject(subject, config, progress=progress or SilentProgress(), notes=notes,
                         load_seconds=time.perf_counter() - started)


def plan_subject(subject: Subject, config: AuditConfig, *, seconds_per_batch: float | None = None,
                 threads: str | None = None) -> tuple[PlanContext, Plan]:
    """The plan for a loaded subject: analyses chosen, their needs and costs; with `seconds_per_batch` (one
    plain forward of one batch, timed) its time budget."""
    tree = ModuleTree(subject.model)
    ctx = PlanContext(subject=subject, tree=tree, blocks=find_blocks(tree, has_head=subject.loaded.has_head),
                      config=config)
    return ctx, make_plan(ctx, ALL_ANALYSES, seconds_per_batch=seconds_per_batch, threads=threads)


def plan_audit(config: AuditConfig) -> Plan:
    """Loads the subject `config` names and returns its plan with its time budget, from plain forwards of
    one batch timed on the threads the audit would choose (what `auditor run --plan` prints)."""
    seed_everything(config.seed)
    subject = load_subject(config)
    forward = batch_forward(subject, config.batch_size)
    choice = choose_threads(config.threads, forward)
    with torch_threads(choice):
        seconds = choice.batch_seconds.get(choice.threads)
        if seconds is None and forward is not None:
            with torch.no_grad():
                seconds = _best_of(forward, 3)
        return plan_subject(subject, config, seconds_per_batch=seconds, threads=choice.describe())[1]


def batch_forward(subject: Subject, batch_size: int) -> Any:
    """A plain forward of the audit's first batch, as a callable (to time it); None without data."""
    if not subject.has_data:
        return None
    batch = subject.first_batch(batch_size)
    return lambda: subject.adapter.forward(subject.model, batch.inputs).float().cpu()  # .cpu(): waits for a GPU


def audit_subject(subject: Subject, config: AuditConfig, *, progress: Progress, load_seconds: float = 0.0,
                  notes: Mapping[str, Any] | None = None) -> AuditReport:
    """Plans, runs the shared capture, runs every planned analysis on it, and gathers the findings, on the
    threads `auditor.engine.threads.choose_threads` picks (restored after)."""
    wall = time.perf_counter()
    forward = batch_forward(subject, config.batch_size)
    choice = choose_threads(config.threads, forward)
    with torch_threads(choice):
        return _audit_subject(subject, config, progress=progress, load_seconds=load_seconds, notes=notes,
                              choice=choice, forward=forward, wall=wall)


def _audit_subject(subject: Subject, config: AuditConfig, *, progress: Progress, load_seconds: float,
                   notes: Mapping[str, Any] | None, choice: ThreadChoice, forward: Any, wall: float) -> AuditReport:
    stages = {"load": load_seconds}
    batch_seconds = choice.batch_seconds.get(choice.threads)
    if batch_seconds is None and forward is not None:
        with torch.no_grad():
            batch_seconds = _best_of(forward, 3)
    plan_ctx, plan = plan_subject(subject, config)
    executor = _executor(config.executor, subject, plan_ctx.tree, batch_size=config.batch_size,
                             progress=progress)  # a cluster that cannot be reached stops the audit here
    progress.start(total=plan.steps, description="auditing")
    try:
        started = time.perf_counter()
        capture = executor.capture(plan.capture.needs) if subject.has_data else Capture.empty(plan.capture.needs)
        stages["capture"] = time.perf_counter() - started
        ctx = AuditContext.after(plan_ctx, capture=capture, executor=executor, progress=progress)
        sections = [run_one(p.analysis, ctx, cost=p.cost) if p.error is None
                    else Section.failed(p.analysis.id, p.analysis.title, p.error) for p in plan.analyses]
    finally:
        executor.close()
        progress.finish()
    for section in sections:
        stages[section.id] = section.seconds
    findings = sorted((f for s in sections for f in s.findings), key=lambda f: -f.severity.rank)
    metrics = {f"{s.id}.{k}": v for s in sections for k, v in s.metrics.items()}
    budgets = stage_budgets(plan, batch_seconds) if batch_seconds is not None else {}
    metadata = _metadata(subject, config, stages, total=load_seconds + time.perf_counter() - wall, notes=notes,
                         budgets=budgets, choice=choice)
    blocks = [BlockRow(name=b.name, kind=b.kind, group=b.group) for b in plan_ctx.blocks]
    report = AuditReport(metadata=metadata, verdict=decide_verdict(findings), modules=ctx.rows, sections=sections,
                         findings=findings, metrics=metrics, not_run=plan.not_run, not_run_titles=plan.not_run_titles,
                         blocks=blocks)
    return with_cards(report, config.cards)  # the synthesis stage: reads only the report


def _executor(spec: ExecutorSpec, subject: Subject, tree: ModuleTree, *, batch_size: int,
              progress: Progress) -> Executor:
    """The executor `[executor]` asks for; Ray is imported only for `kind = "ray"`."""
    if spec.kind == "ray":
        try:
            from auditor.engine.ray_executor import RayExecutor
        except ImportError as err:
            raise ConfigError(f"the ray executor needs Ray ({err}): pip install \"torch-auditor[ray]\"") from None
        return RayExecutor(subject, tree, batch_size=batch_size, progress=progress, spec=spec)
    return LocalExecutor(subject, tree, batch_size=batch_size, progress=progress)


def _portable_config(config: AuditConfig) -> dict[str, Any]:
    raw = config.model_dump(mode="json")
    for table, key in (("model", "path"), ("model", "weights"), ("model", "head"), ("data", "path")):
        raw[table][key] = portable_path(raw[table][key])
    raw["out"] = portable_path(raw["out"])
    for judge in ("discriminator", "classifier"):
        spec: dict[str, Any] | None = (raw.get("generator") or {}).get(judge)
        if spec:
            for key in ("path", "weights", "head"):
                spec[key] = portable_path(spec[key])
    return raw


def _best_of(forward: Any, repeats: int) -> float:
    forward()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        forward()
        best = min(best, time.perf_counter() - started)
    return best


def _metadata(subject: Subject, config: AuditConfig, stages: dict[str, float], *, total: float,
              notes: Mapping[str, Any] | None, budgets: Mapping[str, float], choice: ThreadChoice) -> Metadata:
    loaded = subject.loaded
    return Metadata(
        model_name=loaded.name, model_source=portable_path(loaded.source) or loaded.source,
        model_class=type(loaded.module).__name__, weights_sha256=loaded.weights_sha256, modality=subject.modality,
        task=subject.task, n_samples=len(subject),
        n_classes=len(subject.class_names) if subject.task == "classification" else None,
        class_names=subject.class_names, data_source=portable_path(subject.data.source) or subject.data.source,
        data_fingerprint=data_fingerprint(subject.data) if subject.has_data else None,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        auditor_version=_version("torch-auditor") or "0+unknown", torch_version=torch.__version__,
        transformers_version=_version("transformers"), python_version=platform.python_version(),
        platform=f"{platform.system()} {platform.machine()}", device=str(subject.device), seed=config.seed,
        config=_portable_config(config), stage_seconds={k: round(v, 4) for k, v in stages.items()},
        total_seconds=round(total, 3), budget_seconds={k: round(v, 4) for k, v in budgets.items()},
        threads=choice.threads, threads_reason=choice.describe(),
        notes={k: v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
               for k, v in (notes or {}).items()},
        weights_loading=loaded.weights_loading,
        data_skipped_files=subject.data.skipped_files[:20], data_skipped_count=len(subject.data.skipped_files),
    )


def audit(model: nn.Module | str | Path, data: Any, *, task: Task | None = None, tokenizer: Any = None,
          config: AuditConfig | None = None, analyses: Sequence[str] | None = None, skip: Sequence[str] = (),
          progress: Progress | None = None, notes: Mapping[str, Any] | None = None, threads: int | None = None,
          executor: str | Mapping[str, Any] | None = None, **options: Any) -> AuditReport:
    """Audits a model on data and returns the report (write it with `auditor.save_report(report, dir)`).

    Args:
        model: an `nn.Module` (a Hugging Face model or any module), or what `auditor run --model` takes:
            a Hugging Face directory or a factory `package.module:function`.
        data: a path (image folder, .npz, .csv, .jsonl), a tuple `(x, y)` of arrays or tensors, or for
            text models a mapping `{"text": [...], "label": [...]}` (pass `tokenizer`); None audits the
            weights alone (the analyses that need data are not run; asking for one is an error).
        task: "classification" or "embedding"; by default classification when the model has a head.
        tokenizer: the tokenizer of an in-memory text model.
        config: a full AuditConfig; `options` override its fields (e.g. `batch_size=16`, `seed=1`,
            `max_samples=256` for data options).
        analyses: analysis ids to run (default: every one that applies); `skip`: ids not to run.
        progress: a Progress to report on (silent by default).
        notes: facts to record in the report's metadata.
        threads: CPU threads for torch (default: OMP_NUM_THREADS when set, else the cores this process may
            use, or one where one batch measured as fast on one); the report's metadata says which and why.
        executor: where the passes run: "local" (default) or "ray", or an `[executor]` table as a mapping
            (`{"kind": "ray", "address": "auto", "actors": 4, "cpus_per_actor": 4}`; docs/scale.md).

    Returns:
        The AuditReport: `report.verdict`, `report.findings`, `report.section("inventory")`, ...
    """
    config = config or AuditConfig()
    data_fields = set(type(config.data).model_fields)
    overrides = {(f"data.{k}" if k in data_fields else k): v for k, v in options.items()}
    overrides["threads"] = threads
    if isinstance(executor, str):
        overrides["executor.kind"] = executor
    elif executor is not None:
        overrides.update({f"executor.{k}": v for k, v in executor.items()})
    if analyses is not None:
        overrides["analyses.only"] = list(analyses)
    if skip:
        overrides["analyses.skip"] = list(skip)
    if isinstance(model, (str, Path)):
        overrides["model.path"] = str(model)
    if isinstance(data, (str, Path)):
        overrides["data.path"] = str(data)
    config = config.with_overrides(overrides)
    seed_everything(config.seed)
    started = time.perf_counter()
    loaded = load_model(config.model) if isinstance(model, (str, Path)) else _wrap_module(model, tokenizer)
    if data is None and config.data.path is None:
        subject = data_free_subject(loaded, config, task=task)
    else:
        audit_data = read_data(loaded, config) if data is None or isinstance(data, (str, Path)) \
            else _in_memory_data(data, max_samples=config.data.max_samples, seed=config.seed)
        subject = build_subject(loaded, audit_data, config, task=task)
    return audit_subject(subject, config, progress=progress or SilentProgress(), notes=notes,
                         load_seconds=time.perf_counter() - started)


def audit_generator(generator: nn.Module, discriminator: nn.Module, classifier: nn.Module | None = None, *,
                    config: AuditConfig | None = None, noise_dim: int | None = None, classes: int | None = None,
                    discriminator_output: str = "logit", analyses: Sequence[str] | None = None, skip: Sequence[str] = (),
                    progress: Progress | None = None, notes: Mapping[str, Any] | None = None,
                    **options: Any) -> AuditReport:
    """Audits a generator (noise -> sample) by what its discriminator and a classifier say of its samples.

    Args:
        generator: takes a (batch, noise_dim) noise tensor (and, when conditional, a (batch,) class tensor).
        discriminator: takes a batch of samples (and the classes, when its forward has two arguments) and
            returns one realness score per sample, a logit unless `discriminator_output="probability"`.
        classifier: optional, trained on the real data: class scores per sample.
        config: a full AuditConfig; `options` override its fields (`seed=1`, `max_samples=256` noise vectors).
        noise_dim, classes: as `[generator]` (default: the generator's `noise_dim`/`n_classes` attributes).
        analyses, skip, progress, notes: as for `audit`.

    Returns:
        The AuditReport, with the module inventory and the `judge` section.
    """
    from auditor.config import GeneratorSpec
    from auditor.subject.generator import build_generator_subject

    for role, module in (("generator", generator), ("discriminator", discriminator), ("classifier", classifier)):
        if module is not None and not isinstance(module, nn.Module):
            raise ConfigError(f"{role} must be an nn.Module, not {type(module).__name__}")
    config = config or AuditConfig()
    data_fields = set(type(config.data).model_fields)
    overrides: dict[str, Any] = {(f"data.{k}" if k in data_fields else k): v for k, v in options.items()}
    if analyses is not None:
        overrides["analyses.only"] = list(analyses)
    if skip:
        overrides["analyses.skip"] = list(skip)
    spec = {"discriminator": {"name": type(discriminator).__name__}, "noise_dim": noise_dim, "classes": classes,
            "discriminator_output": discriminator_output}
    if classifier is not None:
        spec["classifier"] = {"name": type(classifier).__name__}
    config = config.with_overrides(overrides)
    config = config.model_copy(update={"generator": GeneratorSpec.model_validate(spec)})
    seed_everything(config.seed)
    started = time.perf_counter()
    subject = build_generator_subject(_wrap_module(generator, None), _wrap_module(discriminator, None),
                                      _wrap_module(classifier, None) if classifier is not None else None, config)
    return audit_subject(subject, config, progress=progress or SilentProgress(), notes=notes,
                         load_seconds=time.perf_counter() - started)


def _wrap_module(model: nn.Module, tokenizer: Any) -> LoadedModel:
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be an nn.Module or a path/factory string, not {type(model).__name__}")
    model.eval()
    names: list[str] = [str(c) for c in getattr(model, "class_names", None) or []]
    id2label = getattr(getattr(model, "config", None), "id2label", None)
    if not names and id2label and not all(str(v).startswith("LABEL_") for v in id2label.values()):
        names = [str(id2label[i]) for i in sorted(id2label)]
    is_hf = hasattr(model, "config") and hasattr(model, "base_model_prefix")
    kind: ModelKind = "hf_text" if tokenizer is not None else ("hf_image" if is_hf else "module")
    causal = is_causal_lm(model)  # a language model: next-token prediction on the texts
    if causal and tokenizer is not None and getattr(tokenizer, "pad_token_id", None) is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return LoadedModel(module=model, kind=kind, name=type(model).__name__, source="python object",
                       tokenizer=tokenizer, class_names=[] if causal else names, causal_lm=causal)


def _in_memory_data(data: Any, *, max_samples: int, seed: int) -> AuditData:
    if isinstance(data, Mapping) and "text" in data:
        texts = [str(t) for t in data["text"]]
        labels = list(data["label"]) if data.get("label") is not None else None
        audit_data = AuditData(kind="text", source="python object", texts=texts, labels=labels)
    elif isinstance(data, Sequence) and len(data) == 2 and not isinstance(data, str):
        x, y = data
        x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        y_list = None if y is None else (y.tolist() if hasattr(y, "tolist") else list(y))
        audit_data = AuditData(kind="arrays", source="python object", arrays=x.astype(np.float32),
                               labels=[int(v) if isinstance(v, (int, np.integer)) else str(v) for v in y_list]
                               if y_list is not None else None)
    else:
        raise DataError("data must be a path, an (x, y) pair, or {'text': [...], 'label': [...]}")
    return cap_samples(audit_data, max_samples=max_samples, seed=seed)


__all__ = ["audit", "audit_generator", "audit_subject", "plan_audit", "plan_subject", "run_audit"]
