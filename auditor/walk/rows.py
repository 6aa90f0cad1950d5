"""The module table of the report: the tree joined with what the walk recorded."""

from __future__ import annotations

import math

from auditor.schema.report import ModuleRow
from auditor.walk.records import ModuleRecord, call_key
from auditor.walk.tree import ModuleNode, ModuleTree
from auditor.walk.units import classify_zero_units


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def module_rows(tree: ModuleTree, records: dict[str, ModuleRecord], forwards: int) -> list[ModuleRow]:
    """One row per `named_modules()` entry, in that order; a module called more than once per forward holds one
    row per call besides (`ModuleRow.per_call`, named `<module>@<k>`)."""
    total_seconds = records[""].seconds if "" in records and records[""].seconds > 0 else None
    rows = []
    for name, node in tree.nodes.items():
        record = records.get(name, ModuleRecord())
        per_call = [_row(tree, node, call_key(name, k), record.of_call(k), records, forwards, total_seconds,
                         call=k, of=len(record.per_call))
                    for k in range(1, len(record.per_call) + 1)] if record.reused else []
        rows.append(_row(tree, node, name, record, records, forwards, total_seconds).model_copy(
            update={"per_call": per_call}))
    return rows


def _row(tree: ModuleTree, node: ModuleNode, name: str, record: ModuleRecord, records: dict[str, ModuleRecord],
         forwards: int, total_seconds: float | None, *, call: int | None = None, of: int | None = None) -> ModuleRow:
    stats = record.stats
    seen = stats.numel > 0
    zeros = classify_zero_units(node, tree.get(node.name), records, record=record)
    return ModuleRow(
        name=name, type=node.type, depth=node.depth, parent=node.parent, params=node.params,
        trainable_params=node.trainable_params, own_params=node.own_params, aliases=list(node.aliases),
        calls_per_forward=record.calls / forwards if forwards else 0.0,
        call=call, of_calls=of,
        order=record.order,
        output_shape=record.shape,
        output_dtype=record.dtype,
        n_outputs=record.n_outputs,
        mean=stats.mean if stats.n else None,
        std=stats.std if stats.n else None,
        min=_finite(stats.min) if stats.n else None,
        max=_finite(stats.max) if stats.n else None,
        zero_fraction=stats.zero_fraction if seen else None,
        units=stats.units if not stats.units_vary else None,
        zero_units=zeros.zero if zeros else None,
        dead_units=zeros.dead if zeros else None,
        pruned_units=zeros.pruned if zeros else None,
        nan_count=stats.nan,
        inf_count=stats.inf,
        time_share=(record.seconds / total_seconds) if total_seconds and record.calls else None,
    )
