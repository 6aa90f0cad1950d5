"""The versioned audit.json schema. Everything here is plain data: renderers never touch torch, so an
old release's audit.json still renders and diffs."""

from __future__ import annotations

import re
import traceback
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from auditor.schema.cards import Card
from auditor.schema.findings import Finding, Severity
from auditor.schema.verdict import PolicyVerdict

SCHEMA_VERSION = "1.3"
"""1.1 added `Section.module_metrics` and `AuditReport.not_run`; 1.2 added `Metadata.data_fingerprint` and
`AuditReport.policy` (and later the per-call rows of reused modules, `ModuleRow.per_call`); 1.3 added
`AuditReport.blocks` and `AuditReport.cards` (the module atlas). Every addition is optional with a default, so
a 1.0, 1.1 or 1.2 audit.json reads as 1.3 (without cards: `auditor cards` computes them)."""

# NaN and Inf (a broken model's metrics) are written as the strings "NaN" and "Infinity", which read back
# as floats, instead of JSON null, which would not.
_FROZEN = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="strings")
Cell = float | int | str | bool | None


class Cost(BaseModel):
    """What an analysis costs, in passes over the audit data (one pass = one forward per batch).

    A pass over a subset of the samples counts as the fraction of the batches it runs."""

    model_config = _FROZEN

    forwards: float = 0.0
    backwards: float = 0.0
    note: str = ""
    forward_equivalents: float | None = None
    """What the forwards cost in full forwards, where they run only part of the network (cached prefixes:
    each patched pass runs what follows the patched module); None: `forwards` full ones."""

    @property
    def full_forwards(self) -> float:
        """The forwards' cost in full forwards (what the time budget counts)."""
        return self.forwards if self.forward_equivalents is None else self.forward_equivalents


class Table(BaseModel):
    """A table a reader can sort; `columns` name the cells of every row, in order."""

    model_config = _FROZEN

    id: str
    title: str
    columns: list[str]
    rows: list[list[Cell]]
    caption: str = ""


class Figure(BaseModel):
    """A figure embedded in the report (no file beside it, nothing fetched)."""

    model_config = _FROZEN

    id: str
    title: str
    media_type: Literal["image/png", "image/svg+xml"] = "image/png"
    data_base64: str
    alt: str
    caption: str = ""


class SectionError(BaseModel):
    """Why an analysis did not finish: the rest of the report still renders."""

    model_config = _FROZEN

    type: str
    message: str
    traceback: str = ""

    @classmethod
    def from_exception(cls, exc: BaseException) -> SectionError:
        tail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:])
        return cls(type=type(exc).__name__, message=str(exc) or type(exc).__name__, traceback=_portable_files(tail))


def _portable_files(text: str) -> str:
    """A traceback with its `File "..."` paths made machine-independent (an audit carries no local layout)."""
    from auditor.paths import portable_path

    return re.sub(r'File "([^"]+)"', lambda m: f'File "{portable_path(m.group(1))}"', text)


class Section(BaseModel):
    """What one analysis found: its summary, metrics, tables, figures and findings, or its error."""

    model_config = _FROZEN

    id: str
    title: str
    summary: str = ""
    cost: Cost = Cost()
    seconds: float = 0.0
    metrics: dict[str, float] = {}
    tables: list[Table] = []
    figures: list[Figure] = []
    findings: list[Finding] = []
    details: dict[str, Any] = {}
    """Structured data specific to the analysis, for its template and for machines."""
    module_metrics: dict[str, dict[str, float]] = {}
    """Every per-module number: `{module name: {key: value}}`, names as `named_modules()` gives them (the
    model itself is ""). A key is a metric name, optionally followed by "/" and a qualifier that runs to
    the end of the key (`ablation_drop/<class name>`); metric names never contain "/". Diffs, policies and
    per-module summaries join sections on the module name."""
    error: SectionError | None = None

    def module_metric(self, key: str) -> dict[str, float]:
        """`{module name: value}` of one key, for the modules that have it."""
        return {name: values[key] for name, values in self.module_metrics.items() if key in values}

    @classmethod
    def failed(cls, id: str, title: str, exc: BaseException, *, seconds: float = 0.0) -> Section:
        """An analysis that raised: an error entry, and a finding so the verdict cannot pass quietly."""
        error = SectionError.from_exception(exc)
        finding = Finding(
            id=f"{id}.analysis_failed",
            severity=Severity.FAIL,
            message=f"The {title.lower()} analysis failed ({error.type}: {error.message[:200]}); "
            "its checks did not run.",
            evidence={"error_type": error.type},
        )
        return cls(id=id, title=title, error=error, findings=[finding], seconds=seconds)


class ModuleRow(BaseModel):
    """One `named_modules()` entry and what the walk saw of its output over the audit data."""

    model_config = _FROZEN

    name: str
    type: str
    depth: int
    parent: str | None
    params: int
    trainable_params: int
    own_params: int
    aliases: list[str] = []
    calls_per_forward: float = 0.0
    call: int | None = None
    """A row of one call: the module's `call`-th call (1-based) in each forward; its name is `<module>@<call>`."""
    of_calls: int | None = None
    """A row of one call: how many calls per forward the module makes."""
    per_call: list[ModuleRow] = []
    """A module called more than once per forward: one row per call (its statistics over all calls are this row's;
    units and dead units only where every call has the same units)."""
    order: int | None = None
    output_shape: list[int | None] | None = None
    """None marks a dimension that varied between calls (batch size, sequence length)."""
    output_dtype: str | None = None
    n_outputs: int = 0
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    zero_fraction: float | None = None
    units: int | None = None
    dead_units: int | None = None
    """Units this module made zero on every audit sample: an activation whose input was not already
    zero, or a layer with parameters whose weights for the unit are not all zero."""
    zero_units: int | None = None
    """Units zero on every audit sample for any reason: dead, pruned, or structural (zero-padding,
    pooling, containers: zeros made without weights or passed on from upstream)."""
    pruned_units: int | None = None
    """Units zero on every audit sample because this layer's weights for them are all zero."""
    nan_count: int = 0
    inf_count: int = 0
    time_share: float | None = None


class WeightsLoading(BaseModel):
    """What it took to load a weights file into the model, so a published checkpoint loads as it is."""

    model_config = _FROZEN

    wrapper_key: str | None = None
    """The file held a checkpoint dict; the state_dict was read from this entry of it."""
    wrapper_other_keys: list[str] = []
    """What else the checkpoint dict held (epoch, optimizer, best accuracy, ...); not used."""
    stripped_prefix: str | None = None
    """A prefix every key carried and no key of the model does ('module.' from DataParallel, ...), removed."""
    filled_keys: list[str] = []
    """Entries of the model absent from the file that torch's strict load filled in (BatchNorm's
    num_batches_tracked in state dicts saved before torch 0.4.1)."""


class Metadata(BaseModel):
    """Who and what: enough to reproduce the audit and to tell two audits apart."""

    model_config = _FROZEN | ConfigDict(protected_namespaces=())

    model_name: str
    model_source: str
    model_class: str
    weights_sha256: str | None = None
    modality: str
    task: str
    n_samples: int
    n_classes: int | None = None
    class_names: list[str] = []
    data_source: str
    data_fingerprint: str | None = None
    """sha256 of what was audited, after sampling: every sample's content and label, in order. Two audits
    with the same fingerprint saw the same samples, so their predictions can be compared sample by sample."""
    created_at: str
    auditor_version: str
    torch_version: str
    transformers_version: str | None = None
    python_version: str
    platform: str
    device: str
    seed: int
    config: dict[str, Any]
    stage_seconds: dict[str, float] = {}
    total_seconds: float = 0.0
    budget_seconds: dict[str, float] = {}
    """Per stage (the capture, each analysis), what its passes should cost: its forward and backward passes
    over the audit data times the measured cost of one (`auditor run --plan` prints the same budget)."""
    threads: int | None = None
    """The CPU threads torch ran on."""
    threads_reason: str | None = None
    """Why that many: asked for, OMP_NUM_THREADS, the cores this process may use, or fewer measured faster."""
    notes: dict[str, Cell] = {}
    """Facts the caller adds, e.g. the demo's held-out accuracy at training time."""
    weights_loading: WeightsLoading | None = None
    """Set when loading the weights file needed more than a plain strict load_state_dict."""
    data_skipped_files: list[str] = []
    """Files of an image folder that are not images and were left out (the first 20)."""
    data_skipped_count: int = 0


class Verdict(BaseModel):
    """The report's one-word answer and the count behind it.

    Without a policy the findings decide (`decided_by="findings"`: fail if any finding fails, warn if any
    warns). When the audit was judged by a release policy (`auditor run --policy`), the gate decides
    (`decided_by="policy"`): a blocked release reads "fail" everywhere, whatever the findings' severities."""

    model_config = _FROZEN

    status: Literal["pass", "warn", "fail"]
    counts: dict[str, int]
    headline: str
    decided_by: Literal["findings", "policy"] = "findings"


class BlockRow(BaseModel):
    """One of the engine's blocks (`auditor.walk.blocks`): the modules a reader calls the model's layers."""

    model_config = _FROZEN

    name: str
    kind: str
    """"embeddings", "layer", "stage" or "head"."""
    group: str | None = None


class AuditReport(BaseModel):
    """The whole audit: metadata, the module table, one section per analysis, and all findings."""

    model_config = _FROZEN

    schema_version: str = SCHEMA_VERSION
    metadata: Metadata
    verdict: Verdict
    modules: list[ModuleRow]
    sections: list[Section]
    findings: list[Finding] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict)
    not_run: dict[str, str] = Field(default_factory=dict)
    """Analyses that did not run, with the reason (skipped by the config, or not applicable)."""
    not_run_titles: dict[str, str] = Field(default_factory=dict)
    """The titles of those analyses, as their sections would be headed (1.3; empty in older audits)."""
    policy: PolicyVerdict | None = None
    """The release gate's verdict when the audit was judged as it ran (`auditor run --policy`)."""
    blocks: list[BlockRow] = Field(default_factory=list)
    """The engine's blocks, in model order (1.3; empty in older audits)."""
    cards: list[Card] = Field(default_factory=list)
    """The module atlas: one card per block and per leaf a finding names (1.3; empty in older audits)."""

    def with_policy(self, policy: PolicyVerdict) -> AuditReport:
        """This audit judged by the release gate: `policy` stored, and its result the verdict (the headline of
        the HTML and PDF banner, of audit.json's `verdict`, of the diff and of the terminal)."""
        return self.model_copy(update={"policy": policy, "verdict": gate_verdict(self.verdict.counts, policy)})

    def analysis_title(self, id: str) -> str:
        """How the report names analysis `id`: its section's title, else its title from the plan, else the id."""
        for section in self.sections:
            if section.id == id:
                return section.title
        return self.not_run_titles.get(id, id)

    def section(self, id: str) -> Section:
        """The section of analysis `id` (KeyError when it did not run)."""
        for section in self.sections:
            if section.id == id:
                return section
        raise KeyError(f"no section {id!r}; sections: {[s.id for s in self.sections]}")

    def findings_by_id(self, id: str) -> list[Finding]:
        return [f for f in self.findings if f.id == id]

    def card(self, module: str) -> Card:
        """The card of one module (KeyError when the audit has none for it)."""
        for card in self.cards:
            if card.module == module:
                return card
        raise KeyError(f"no card for {module!r}; cards: {[c.module for c in self.cards][:20]}")

    def _repr_html_(self) -> str:
        """In a notebook: the verdict and the atlas (the full report is `auditor.save_report`)."""
        from auditor.schema.notebook import atlas_html

        return atlas_html(status=self.verdict.status, headline=self.verdict.headline,
                          model_name=self.metadata.model_name, findings=len(self.findings), cards=self.cards)


def gate_verdict(counts: dict[str, int], policy: PolicyVerdict) -> Verdict:
    """The verdict when a release policy was evaluated: the gate's result is the headline; the findings'
    counts stay beside it."""
    warns = counts.get("warn", 0)
    review = f" {warns} warning{'s' * (warns != 1)} to review." if warns else ""
    if policy.passed:
        return Verdict(status="pass", counts=counts, decided_by="policy",
                       headline=f"Release gate passed: {policy.headline}{review}")
    return Verdict(status="fail", counts=counts, decided_by="policy",
                   headline=f"Release blocked, the gate failed (exit {policy.exit_code}): {policy.headline}")


def decide_verdict(findings: list[Finding]) -> Verdict:
    """fail if any finding fails, warn if any warns, else pass."""
    counts = {s.value: sum(1 for f in findings if f.severity == s) for s in Severity}
    if counts["fail"]:
        status: Literal["pass", "warn", "fail"] = "fail"
        headline = f"Not fit to release: {counts['fail']} failing finding{'s' * (counts['fail'] != 1)}."
    elif counts["warn"]:
        status = "warn"
        headline = f"Release with care: {counts['warn']} warning{'s' * (counts['warn'] != 1)} to review."
    else:
        status = "pass"
        headline = "No failing or warning findings."
    return Verdict(status=status, counts=counts, headline=headline)
