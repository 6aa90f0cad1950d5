"""Merging the shared capture's shards: what several workers recorded over consecutive runs of batches becomes
what one pass over all the batches records.

A shard is a `CapturePart` over a contiguous run of batches; the shards come in data order. Per-sample pieces
(pooled rows, gradients, scores) are concatenated in that order: exactly the local run's. Counts, extremes,
dead units and call orders merge exactly. Two reductions are sums whose order the merge changes, both in
float64: a module's running mean and spread (`RunningStats.combine`, Chan et al.'s parallel form) and the
per-unit sums of unit means; they agree with the local run's to `MERGE_RTOL`. Top-k merges keep the k largest
of the shards' top-k, which are the whole data's k largest (ties may name another sample of the same value).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from auditor.engine.capture import CapturePart
from auditor.walk.collectors import CallCollector, ModuleCollector, TopK, UnitMeans
from auditor.walk.records import CallRecord, ModuleRecord, merged_shape
from auditor.walk.stats import RunningStats

MERGE_RTOL = 1e-9
"""Merged running statistics (mean, std) and unit means agree with a single pass's to this relative tolerance
(float64 sums in another order: in practice ~1e-15)."""


def merge_parts(parts: Sequence[CapturePart]) -> CapturePart:
    """One `CapturePart` as if one pass had run over all the shards' batches, in the given order."""
    if not parts:
        raise ValueError("no capture shard to merge")
    if len(parts) == 1:
        return parts[0]
    error = next((p.backward_error for p in parts if p.backward_error is not None), None)
    return CapturePart(
        records=_merge_records(parts), collectors=_merge_collectors(parts),
        forwards=sum(p.forwards for p in parts), sizes=[n for p in parts for n in p.sizes],
        scores=[s for p in parts for s in p.scores], targets=[t for p in parts for t in p.targets],
        backwards=sum(p.backwards for p in parts), backward=parts[0].backward,
        in_place=frozenset().union(*(p.in_place for p in parts)), backward_error=error)


# --- module records --------------------------------------------------------------------------------------

def _merge_records(parts: Sequence[CapturePart]) -> dict[str, ModuleRecord]:
    names = list(dict.fromkeys(name for p in parts for name in p.records))
    merged = {name: ModuleRecord() for name in names}
    next_order = 0
    for part in parts:
        # calls first completed in this shard take the next orders, in the order this shard saw them complete:
        # what one pass sees, since every earlier batch is in an earlier shard
        firsts = sorted(((c.order, name, k) for name, record in part.records.items()
                         for k, c in enumerate(record.per_call)), key=lambda item: item[0])
        for _, name, k in firsts:
            per_call = merged[name].per_call
            if len(per_call) <= k:
                while len(per_call) <= k:
                    per_call.append(CallRecord(order=next_order))
                    next_order += 1
        for name, record in part.records.items():
            out = merged[name]
            out.calls += record.calls
            out.n_outputs = max(out.n_outputs, record.n_outputs)
            out.dtype = out.dtype or record.dtype
            for k, call in enumerate(record.per_call):
                _merge_call(out.per_call[k], call)
    return merged


def _merge_call(out: CallRecord, call: CallRecord) -> None:
    if call.count == 0:
        return
    out.shape = merged_shape(out.shape, call.shape)
    out.count += call.count
    out.seconds += call.seconds
    out.input_sources |= call.input_sources
    out.stats = RunningStats.combine([out.stats, call.stats])


# --- collectors ------------------------------------------------------------------------------------------

def _merge_collectors(parts: Sequence[CapturePart]) -> dict[str, ModuleCollector]:
    merged: dict[str, ModuleCollector] = {}
    for name, first in parts[0].collectors.items():
        pieces = [p.collectors[name] for p in parts]
        out = ModuleCollector(unit_means=first.unit_means, pooled=first.pooled, pooled_input=first.pooled_input,
                              top_k=first.top_k, gradients=first.gradients, unit_relevance=first.unit_relevance,
                              relevance_of_input=first.relevance_of_input)
        calls = max(len(c.calls) for c in pieces)
        for k in range(calls):
            shard_calls = [c.calls[k] if k < len(c.calls) else _gap(c) for c in pieces]
            out.calls.append(_merge_call_collectors(shard_calls))
        out.sizes = [n for c in pieces for n in c.sizes]
        out.whole_top_k_varies = any(c.whole_top_k_varies for c in pieces)
        if not out.whole_top_k_varies and any(c.whole_top_k is not None for c in pieces):
            # a shard whose forwards each called the module once: its call 1's top-k is the module's
            wholes = [c.whole_top_k if c.whole_top_k is not None else (c.calls[0].top_k if c.calls else None)
                      for c in pieces]
            out.whole_top_k = _merge_top_k([w for w in wholes if w is not None])
        merged[name] = out
    return merged


def _gap(module: ModuleCollector) -> CallCollector:
    """A call that did not run in any of this shard's forwards: gaps for each of its batches."""
    c = CallCollector(unit_means=UnitMeans() if module.unit_means else None,
                      top_k=TopK(module.top_k) if module.top_k else None)
    for n in module.sizes:
        if module.pooled:
            c.pooled_batches.append(torch.full((n, 0), float("nan")))
        if module.pooled_input:
            c.pooled_input_batches.append(torch.full((n, 0), float("nan")))
        if module.gradients:
            c.grad_norm_batches.append(torch.zeros(n))
            c.grad_x_act_batches.append(torch.zeros(n))
        if module.unit_relevance:
            c.relevance_batches.append(None)
    return c


def _merge_call_collectors(calls: Sequence[CallCollector]) -> CallCollector:
    first = calls[0]
    out = CallCollector(
        unit_means=_merge_unit_means([c.unit_means for c in calls if c.unit_means is not None])
        if first.unit_means is not None else None,
        top_k=_merge_top_k([c.top_k for c in calls if c.top_k is not None]) if first.top_k is not None else None,
        grad_hooked=any(c.grad_hooked for c in calls), per_sample=all(c.per_sample for c in calls))
    for c in calls:
        out.pooled_batches += c.pooled_batches
        out.pooled_input_batches += c.pooled_input_batches
        out.grad_norm_batches += c.grad_norm_batches
        out.grad_x_act_batches += c.grad_x_act_batches
        out.relevance_batches += c.relevance_batches
    return out


def _merge_unit_means(parts: Sequence[UnitMeans]) -> UnitMeans:
    out = UnitMeans()
    for part in parts:
        if part.varies:
            return UnitMeans(varies=True)
        if part.total is None or part.count is None:
            continue
        if out.total is None or out.count is None:
            out.total, out.count = part.total.clone(), part.count.clone()
        elif out.total.shape != part.total.shape:
            return UnitMeans(varies=True)
        else:
            out.total += part.total
            out.count += part.count
    return out


def _merge_top_k(parts: Sequence[TopK]) -> TopK:
    """The k largest of the shards' top-k per unit: the whole data's top-k (values exact)."""
    k = parts[0].k
    present = [p for p in parts if p.values is not None and p.samples is not None and p.positions is not None]
    if not present:
        return TopK(k)
    values = torch.cat([p.values for p in present if p.values is not None], dim=1)
    samples = torch.cat([p.samples for p in present if p.samples is not None], dim=1)
    positions = torch.cat([p.positions for p in present if p.positions is not None], dim=1)
    top, index = values.topk(min(k, values.shape[1]), dim=1)
    return TopK(k, top, samples.gather(1, index), positions.gather(1, index))


__all__ = ["MERGE_RTOL", "merge_parts"]
