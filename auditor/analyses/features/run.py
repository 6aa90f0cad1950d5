"""One run of the features analysis: units chosen, examples read from the capture, inputs optimized or
searched, feature maps and attention drawn."""


from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from auditor.engine.analysis import Analysis, AuditContext, PlanContext
from auditor.errors import ConfigError
import auditor.analyses.features.gallery as gallery
from auditor.analyses.features.attention import attention_hooks, eager_attention, head_stats
from auditor.analyses.features.optim import InputRange, OptimSettings, maximize
from auditor.analyses.features.tokens import SearchSettings, TokenSearch
from auditor.analyses.features.units import Objective, centre_position, output_of, run_to, unit_values, unit_view
from auditor.schema.report import Figure, Section
from auditor.subject.inputs import ImageInputs, TextInputs
from auditor.walk.records import split_call


from auditor.analyses.features.params import FeaturesParams, UnitView
from auditor.analyses.features.report import unit_detail, units_table, weak_optimizations


# --- the run --------------------------------------------------------------------------------------------

class Run:
    def __init__(self, params: FeaturesParams, ctx: AuditContext) -> None:
        self.p, self.ctx, self.subject = params, ctx, ctx.subject
        first = next(ctx.subject.batches(ctx.config.batch_size))
        self.keys = list(first.inputs)
        self.inputs = ctx.subject.inputs
        self.key = self.inputs.key
        self._receptive: dict[str, tuple[float, float]] = {}

    @property
    def _text(self) -> TextInputs:
        """The subject's inputs, where they are text (the token views)."""
        assert isinstance(self.inputs, TextInputs)
        return self.inputs

    def _inputs(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return self.subject.encode_samples(indices)

    def _forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.subject.adapter.forward(self.subject.model, inputs)

    # --- choosing units -----------------------------------------------------------------------------

    def choose(self, name: str) -> list[UnitView]:
        capture = self.ctx.capture
        topk = capture.top_k.get(name)
        if topk is None or topk.values is None or topk.samples is None or topk.positions is None:
            return []
        relevance = capture.unit_relevance.get(name)
        units = topk.values.shape[0]
        if relevance is not None and relevance.shape[1] == units:
            score = relevance.double().abs().mean(dim=0)
        elif name in capture.pooled and capture.pooled[name].shape[1] == units:
            score = capture.pooled[name].double().var(dim=0)
        else:
            score = topk.values[:, 0].double()
        named = self.p.units.get(name)
        if named:
            bad = [u for u in named if not 0 <= u < units]
            if bad:
                raise ConfigError(f"[analyses.features] units {bad} of {name} do not exist (it has {units})")
            picked = list(named)
        else:
            order = torch.argsort(score, descending=True, stable=True).tolist()
            alive = [u for u in order if float(topk.values[u, 0]) > 0] or order
            picked = alive[:self.p.units_per_module]
        views = []
        for u in picked:
            finite = torch.isfinite(topk.values[u])
            shown = [(int(s), float(v), int(pos)) for s, v, pos, ok in
                     zip(topk.samples[u], topk.values[u], topk.positions[u], finite, strict=True) if ok]
            view = UnitView(module=name, unit=int(u), relevance=float(score[u]), max_real=shown[0][1] if shown else math.nan,
                            by_activation=shown[:self.p.examples])
            view.real_objective = view.max_real
            pooled = capture.pooled.get(name)
            if not self.inputs.is_text and self.p.objective == "channel" and pooled is not None and pooled.shape[1] == units:
                view.real_objective = float(pooled[:, u].max())
            if relevance is not None and relevance.shape[1] == units:
                r = relevance[:, u]
                top = torch.argsort(r, descending=True, stable=True)[:self.p.examples]
                view.by_relevance = [(int(i), float(r[i])) for i in top]
            views.append(view)
        return views

    # --- the section ----------------------------------------------------------------------------------

    def section(self, analysis: Analysis, modules: list[str]) -> Section:
        p, ctx = self.p, self.ctx
        # A module called more than once per forward is shown per call (`pool@2`: its second call), each call
        # with its own units, top examples and optimized inputs.
        names = [k for n in modules for k in (ctx.capture.call_keys(n) or [n]) if k in ctx.capture.top_k]
        chosen = {name: self.choose(name) for name in names}
        chosen = {k: v for k, v in chosen.items() if v}
        figures: list[Figure] = []
        details: dict[str, Any] = {"modules": [], "text_units": [], "attention": None}
        if self.inputs.is_text:
            for name, views in chosen.items():
                if p.token_search and p.search_units:
                    self._search(name, views[:p.search_units])
                details["text_units"].append({"module": name, "units": _shared_lists([self._text_unit(v) for v in views])})
        elif isinstance(self.inputs, ImageInputs):
            rng = self._input_range()
            for name, views in chosen.items():
                images = self._optimize(name, views, rng)
                figures.append(self._gallery(name, views, images, rng))
            if p.feature_maps:
                figures += self._feature_maps(names, rng)
        else:
            rng = self._input_range()
            for name, views in chosen.items():
                self._optimize(name, views, rng)
        if p.attention:
            attention = self._attention()
            if attention is not None:
                details["attention"], attention_figures = attention
                figures += attention_figures
        module_metrics: dict[str, dict[str, float]] = {}
        for name, views in chosen.items():
            values = {"max_real_activation": max(v.real_objective for v in views)}
            reached = [v.optimized_objective for v in views if v.optimized_objective is not None]
            if reached:
                values["max_optimized_activation"] = max(reached)
            module_metrics[name] = values
            details["modules"].append({"module": name, "units": [unit_detail(v) for v in views]})
        if details["attention"] is not None:
            for layer in details["attention"]["layers"]:
                metrics = module_metrics.setdefault(layer["module"], {})
                for h, (d, e) in enumerate(zip(layer["distance"], layer["entropy"], strict=True)):
                    metrics[f"attention_distance/{h}"] = d
                    metrics[f"attention_entropy/{h}"] = e
        all_views = [v for views in chosen.values() for v in views]
        findings = weak_optimizations(all_views)
        searched = [v for v in all_views if v.optimized_objective is not None]
        metrics = {"units_shown": float(len(all_views)), "modules_shown": float(len(chosen))}
        if searched:
            metrics["units_beating_real"] = float(sum(1 for v in searched if v.optimized_objective is not None
                                                      and v.optimized_objective >= v.real_objective))
        if self.inputs.is_text:
            how = (f"for {len(searched)} of them a token search ({p.search_length} tokens) that maximizes the unit"
                   if searched else "no token search")
        else:
            how = "an input optimized to maximize each"
        summary = (f"{len(all_views)} units of {len(chosen)} modules, chosen by "
                   + ("mean |gradient × activation| toward the decision" if ctx.capture.unit_relevance
                      else "variance over the data")
                   + f": their top {p.examples} examples by activation (from the capture's top-{p.top_k})"
                   + (" and by relevance" if ctx.capture.unit_relevance else "")
                   + f", and {how}, beside the best real sample.")
        return Section(id=analysis.id, title=analysis.title, summary=summary, metrics=metrics,
                       tables=[units_table(all_views, text=self.inputs.is_text)], figures=figures, findings=findings,
                       module_metrics=module_metrics, details=details)

    # --- images ----------------------------------------------------------------------------------------

    def _sample_inputs(self) -> torch.Tensor:
        return torch.cat([b.inputs[self.key].detach().float().cpu() for b in self.subject.batches(self.ctx.config.batch_size)])

    def _input_range(self) -> InputRange:
        processor = self.subject.loaded.image_processor
        mean, std = getattr(processor, "image_mean", None), getattr(processor, "image_std", None)
        if processor is not None and mean is not None and std is not None and getattr(processor, "do_normalize", True):
            return InputRange.from_normalization(list(mean), list(std))
        return InputRange.from_samples(self._sample_inputs())

    def _module(self, name: str) -> tuple[nn.Module, int]:
        """The module of a visualized name and which of its calls per forward: `pool@2` is call 2 of `pool`."""
        module, call = split_call(name)
        if call is None or module not in self.ctx.capture.calls:
            return self.ctx.tree.get(name), 1
        return self.ctx.tree.get(module), call

    def _objective(self, name: str, units: torch.Tensor, kind: Objective
                   ) -> Callable[[torch.Tensor], torch.Tensor]:
        module, call = self._module(name)

        def objective(x: torch.Tensor) -> torch.Tensor:
            out = run_to(module, lambda: self._forward({self.key: x}), call=call)
            return unit_values(out, module, units, kind)
        return objective

    def _optimize(self, name: str, views: list[UnitView], rng: InputRange) -> torch.Tensor:
        """Optimizes one input per unit, all units of the module in one batch; records what they reach."""
        sample = self._inputs([0])[self.key]
        units = torch.tensor([v.unit for v in views])
        spatial = len(self._map_shape(name)) > 0
        kind: Objective = self.p.objective if spatial else "channel"
        scale = torch.tensor([v.real_objective if math.isfinite(v.real_objective) and v.real_objective > 0 else 1.0
                              for v in views])
        settings = OptimSettings(steps=self.p.steps, learning_rate=self.p.learning_rate, transforms=self.p.transforms,
                                 decorrelate=self.p.decorrelate, tv_weight=self.p.tv_weight,
                                 l2_weight=self.p.l2_weight, seed=self.ctx.config.seed)
        images = maximize(self._objective(name, units, kind), len(views), tuple(sample.shape[1:]), rng,
                          scale=scale, settings=settings)
        generator = torch.Generator().manual_seed(self.ctx.config.seed)
        shape = (1, -1, *([1] * (images.dim() - 2)))
        noise = rng.low.view(shape) + (rng.high - rng.low).view(shape) * torch.rand(images.shape, generator=generator)
        with torch.no_grad():
            reached = self._objective(name, units, "peak")(images)
            objective = self._objective(name, units, kind)(images)
            random = self._objective(name, units, "peak")(noise)
        for v, r, o, z in zip(views, reached, objective, random, strict=True):
            v.optimized, v.optimized_objective, v.random = float(r), float(o), float(z)
        return images

    def _map_shape(self, name: str) -> tuple[int, ...]:
        shape = self.ctx.capture.records[name].shape
        if not shape or len(shape) < 4:
            return ()
        spatial = [s for s in shape[2:] if s]
        return tuple(spatial) if len(spatial) == len(shape) - 2 else ()

    def _maps(self, name: str, indices: list[int]) -> torch.Tensor:
        """(samples, positions, units) of a module's output on some samples."""
        module, call = self._module(name)
        inputs = self._inputs(indices)
        with torch.no_grad():
            out = run_to(module, lambda: self._forward(inputs), call=call)
        return unit_view(out.float().cpu(), module)[0]

    def _patch_box(self, name: str, position: int, image: tuple[int, int]) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of the input a conv unit at `position` sees: its receptive field."""
        grid = self._map_shape(name)
        if len(grid) != 2:
            return 0, 0, image[0], image[1]
        half = self._receptive_half(name)
        row, col = divmod(position, grid[1])
        cy, cx = (row + 0.5) * image[0] / grid[0], (col + 0.5) * image[1] / grid[1]
        top, left = max(0, math.floor(cy - half[0])), max(0, math.floor(cx - half[1]))
        return top, left, min(image[0], math.ceil(cy + half[0])), min(image[1], math.ceil(cx + half[1]))

    def _receptive_half(self, name: str) -> tuple[float, float]:
        """Half the height and width of a conv module's receptive field, from the gradient of its centre
        position on a few samples (the input pixels that reach it)."""
        if name in self._receptive:
            return self._receptive[name]
        module, call = self._module(name)
        x = self._inputs(list(range(min(8, len(self.subject)))))[self.key].detach().requires_grad_()
        with torch.enable_grad(), output_of(module, call=call) as kept:
            self._forward({self.key: x})
            view, spatial = unit_view(kept["out"], module)
            centre = view[:, centre_position(spatial)].sum()
            (grad,) = torch.autograd.grad(centre, [x], allow_unused=True)
        if grad is None or not bool(grad.abs().sum() > 0):
            half = (x.shape[2] / 2, x.shape[3] / 2)
        else:
            reach = grad.abs().sum(dim=(0, 1)) > 0
            rows, cols = torch.nonzero(reach.any(dim=1)).flatten(), torch.nonzero(reach.any(dim=0)).flatten()
            half = ((int(rows.max()) - int(rows.min()) + 1) / 2, (int(cols.max()) - int(cols.min()) + 1) / 2)
        self._receptive[name] = half
        return half

    def _gallery(self, name: str, views: list[UnitView], images: torch.Tensor, rng: InputRange) -> Figure:
        indices = sorted({s for v in views for s, _, _ in v.by_activation} | {s for v in views for s, _ in v.by_relevance})
        inputs = dict(zip(indices, self._inputs(indices)[self.key].float().cpu(), strict=True)) if indices else {}
        relevance_positions: dict[tuple[int, int], int] = {}
        spatial = bool(self._map_shape(name))
        if spatial:
            rel_samples = sorted({s for v in views for s, _ in v.by_relevance})
            if rel_samples:
                maps = self._maps(name, rel_samples)
                for v in views:
                    for s, _ in v.by_relevance:
                        relevance_positions[(v.unit, s)] = int(maps[rel_samples.index(s), :, v.unit].argmax())
        rows = []
        for v, image in zip(views, images, strict=True):
            size = tuple(image.shape[-2:])
            act = [(gallery.crop(inputs[s], self._patch_box(name, pos, size)) if spatial else inputs[s], f"{a:.3g}")
                   for s, a, pos in v.by_activation]
            rel = [(gallery.crop(inputs[s], self._patch_box(name, relevance_positions[(v.unit, s)], size))
                    if spatial else inputs[s], f"{r:.3g}") for s, r in v.by_relevance]
            rows.append(gallery.Row(label=self._unit_label(name, v.unit), optimized=image,
                                    note=f"{v.optimized_objective:.3g} (real {v.real_objective:.3g})", by_activation=act,
                                    by_relevance=rel))
        return gallery.unit_gallery(name, rows, low=rng.low, high=rng.high, examples=self.p.examples,
                                    patches=spatial, objective=self.p.objective if spatial else "unit")

    def _feature_maps(self, names: list[str], rng: InputRange) -> list[Figure]:
        conv = [n for n in names if len(self._map_shape(n)) == 2]
        if not conv:
            return []
        samples = _one_per_class(self.ctx, self.p.feature_map_samples)
        x = self._inputs(samples)[self.key].float().cpu()
        figures = []
        for name in conv:
            maps = self._maps(name, samples)  # (samples, positions, channels)
            grid = self._map_shape(name)
            channels = torch.argsort(maps.mean(dim=(0, 1)), descending=True)[:self.p.feature_map_channels].tolist()
            per = maps[:, :, channels].reshape(len(samples), *grid, len(channels)).permute(0, 3, 1, 2)
            labels = [self._sample_label(i) for i in samples]
            figures.append(gallery.feature_maps(name, x, per, channels, labels, low=rng.low, high=rng.high))
        return figures

    def _unit_label(self, name: str, unit: int) -> str:
        """"unit 12", or the class name for a unit of the head (a class logit)."""
        head = next((b.name for b in self.ctx.blocks if b.kind == "head"), None)
        names = self.subject.class_names
        if name == head and unit < len(names):
            return f"class {names[unit]}"
        return f"unit {unit}"

    def _sample_label(self, index: int) -> str:
        names = self.subject.class_names
        if self.subject.labels is not None:
            c = int(self.subject.labels[index])
            return f"#{index} ({names[c] if c < len(names) else c})"
        return f"#{index}"

    # --- text -------------------------------------------------------------------------------------------

    def _search(self, name: str, views: list[UnitView]) -> None:
        embeddings = _word_embeddings(self.ctx)
        if embeddings is None or self._text.tokenizer is None:
            return
        search = TokenSearch(embeddings, self._text.tokenizer, self.keys, device=self.subject.device)
        module, call = self._module(name)
        p = self.p
        settings = SearchSettings(length=p.search_length, steps=p.search_steps, candidates=p.search_candidates,
                                  top=p.search_top, seed=self.ctx.config.seed)
        for v in views:
            unit = v.unit

            def score(inputs: dict[str, torch.Tensor], unit: int = unit) -> torch.Tensor:
                out = run_to(module, lambda: self._forward(inputs), call=call)
                units = torch.full((out.shape[0],), unit, dtype=torch.long)
                mask = inputs.get("attention_mask")
                x, _ = unit_view(out, module)
                valid = mask if mask is not None and x.shape[1] == mask.shape[1] else None
                return unit_values(out, module, units, "peak", valid)

            result = search.run(score, settings)
            v.optimized = v.optimized_objective = result.value
            v.search = {"tokens": result.tokens, "text": _join_tokens(result.tokens), "value": result.value,
                        "start_value": result.start_value, "evaluated": result.evaluated}

    def _text_unit(self, v: UnitView) -> dict[str, Any]:
        snippets = self._activation_snippets(v)
        rel_samples = [s for s, _ in v.by_relevance]
        rel = []
        if rel_samples:
            maps = self._maps(v.module, rel_samples)
            for k, (s, r) in enumerate(v.by_relevance):
                rel.append(self._snippet(s, self._own_peak(maps[k], s, v.unit), r))
        unit = {"unit": v.unit, "label": self._unit_label(v.module, v.unit), "max_real": v.max_real,
                "relevance": v.relevance, "search": v.search, "by_activation": snippets, "by_relevance": rel}
        special = {s["special_peak"]["token"] for s in snippets if "special_peak" in s}
        if snippets and len(special) == 1 and all("special_peak" in s for s in snippets):
            unit["peaks_on"] = special.pop()  # a unit of a special token: said once, its own-text peaks shown
        return unit

    def _own_peak(self, map_: torch.Tensor, index: int, unit: int) -> int:
        """The position of a unit's peak among a sample's own text (never [CLS], [SEP] or the padding after it);
        -1 for a unit with one position (pooled, logits): the snippet is then the whole text."""
        if map_.shape[0] <= 1:
            return -1
        values = map_[:len(self._tokens(index)), unit].double().clone()
        values[~self._text_positions(index)[:len(values)]] = -math.inf
        return int(values.argmax()) if bool(torch.isfinite(values).any()) else -1

    def _activation_snippets(self, v: UnitView) -> list[dict[str, Any]]:
        """The top samples by activation around their peak. A peak on a special token ([CLS], [SEP]) says what the
        unit does at that token, not in the text: the snippet marks the text's own peak, with the special one beside."""
        if not v.by_activation:
            return []
        maps = self._maps(v.module, [s for s, _, _ in v.by_activation])
        out = []
        for k, (s, value, pos) in enumerate(v.by_activation):
            own = self._own_peak(maps[k], s, v.unit)
            if maps.shape[1] <= 1 or own < 0 or own == pos:
                out.append(self._snippet(s, own if maps.shape[1] <= 1 else pos, value))
                continue
            snippet = self._snippet(s, own, float(maps[k, own, v.unit]))
            snippet["special_peak"] = {"token": self._tokens(s)[pos] if 0 <= pos < len(self._tokens(s)) else "",
                                       "value": value}
            out.append(snippet)
        return out

    def _tokens(self, index: int) -> list[str]:
        return self._text.tokens(self._inputs([index])[self._text.key][0].tolist())

    def _text_positions(self, index: int) -> torch.Tensor:
        """(positions,) bool: the sample's own tokens, not special ones ([CLS], [SEP], [PAD]) nor masked padding."""
        return self._text.not_special(self._inputs([index]))

    def _snippet(self, index: int, position: int, value: float) -> dict[str, Any]:
        """The tokens around a unit's peak: [before, the token, after], word pieces kept as the model saw them."""
        tokens = self._tokens(index)
        if position < 0 or position >= len(tokens):  # a unit with one position (pooled, logits): the text itself
            own = self._text_positions(index)
            text = [t for t, keep in zip(tokens, own.tolist(), strict=False) if keep]
            return {"sample": index, "value": value, "before": _join_tokens(text), "token": "", "after": ""}
        c = self.p.context_tokens
        before = tokens[max(0, position - c):position]
        after = tokens[position + 1:position + 1 + c]
        return {"sample": index, "value": value, "before": ("… " if position - c > 0 else "") + _join_tokens(before),
                "token": _join_tokens([tokens[position]]),
                "after": _join_tokens(after) + (" …" if position + 1 + c < len(tokens) else "")}

    # --- attention -----------------------------------------------------------------------------------------

    def _attention(self) -> tuple[dict[str, Any], list[Figure]] | None:
        heads, _ = self.ctx.attention_heads
        names = attention_modules(self.ctx)
        if not heads or not names:
            return None
        modules = {n: self.ctx.tree.get(n) for n in sorted(names, key=self.ctx.tree.names.index)}
        n = min(self.p.attention_samples, len(self.subject))
        indices = list(range(n))
        bs = self.ctx.config.batch_size
        per_layer: dict[str, list[tuple[torch.Tensor, torch.Tensor | None]]] = {k: [] for k in modules}
        patterns: dict[str, torch.Tensor] = {}
        with eager_attention(self.subject.model), attention_hooks(modules) as kept, torch.no_grad():
            for start in range(0, n, bs):
                chunk = indices[start:start + bs]
                inputs = self._inputs(chunk)
                kept.clear()
                self._forward(inputs)
                mask = inputs.get("attention_mask")
                for name in modules:
                    if name in kept:
                        per_layer[name].append((kept[name], mask.cpu() if mask is not None else None))
                        if start == 0:
                            patterns[name] = kept[name][:self.p.attention_patterns]
        if not any(per_layer.values()):
            return None
        layers = []
        for name, parts in per_layer.items():
            if not parts:
                continue
            stats = [head_stats(a, m) for a, m in parts]
            weights = [a.shape[0] for a, _ in parts]
            total = sum(weights)

            def avg(values: list[list[float]], weights: list[int] = weights, total: int = total) -> list[float]:
                return [round(sum(w * v[h] for w, v in zip(weights, values, strict=True)) / total, 6)
                        for h in range(len(values[0]))]

            layers.append({"module": name, "distance": avg([s.distance for s in stats]),
                           "entropy": avg([s.entropy for s in stats]),
                           "first_token": avg([s.first_token for s in stats])})
        figures = [gallery.head_stats_figure(layers)]
        if patterns:
            sample_inputs = self._inputs(indices[:self.p.attention_patterns])
            labels = None
            if self.inputs.is_text:
                labels = [self._tokens(i) for i in indices[:self.p.attention_patterns]]
            mask = sample_inputs.get("attention_mask")
            for k in range(min(self.p.attention_patterns, n)):
                length = int(mask[k].sum()) if mask is not None else None
                figures.append(gallery.attention_patterns(
                    {name: a[k] for name, a in patterns.items() if k < a.shape[0]}, k=indices[k], length=length,
                    tokens=labels[k] if labels else None))
        return {"samples": n, "heads": heads, "layers": layers}, figures


# --- small helpers --------------------------------------------------------------------------------------

def attention_modules(ctx: PlanContext) -> list[str]:
    """The innermost modules whose class is an attention (BertSelfAttention inside BertAttention; ViTAttention in
    transformers 5, which has no self-attention child)."""
    found = [n for n, m in ctx.tree.modules() if type(m).__name__.endswith("Attention")]
    return [n for n in found if not any(other.startswith(f"{n}.") for other in found)]


def _one_per_class(ctx: AuditContext, count: int) -> list[int]:
    """Up to `count` samples, one per class in class order (the first of each), else the first samples."""
    labels = ctx.subject.labels if ctx.subject.labels is not None else ctx.clean.predictions
    picked: list[int] = []
    for c in sorted(set(labels.tolist())):
        hits = torch.nonzero(labels == c).flatten()
        if len(hits):
            picked.append(int(hits[0]))
        if len(picked) >= count:
            break
    return picked or list(range(min(count, len(ctx.subject))))


def _word_embeddings(ctx: PlanContext) -> nn.Embedding | None:
    """The token embedding table: the largest `nn.Embedding` under the embeddings block (else in the model)."""
    root_name = next((b.name for b in ctx.blocks if b.kind == "embeddings"), "")
    root = ctx.tree.get(root_name) if root_name else ctx.subject.model
    tables = [m for m in root.modules() if isinstance(m, nn.Embedding)]
    return max(tables, key=lambda m: m.num_embeddings) if tables else None


def _join_tokens(tokens: list[str]) -> str:
    """Word pieces joined as text: "##" continuations glued to the previous piece."""
    out = ""
    for t in tokens:
        if t.startswith("##"):
            out += t[2:]
        else:
            out += (" " if out else "") + t
    return out


def _shared_lists(units: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Units whose top-by-relevance lists are the same samples with the same values (a two-class head's two
    logits, whose relevances mirror each other) show the list once: the later units name the first instead of
    repeating it as if it were a distinct result."""
    seen: dict[tuple[tuple[int, float], ...], str] = {}
    out = []
    for unit in units:
        key = tuple((int(s["sample"]), round(float(s["value"]), 6)) for s in unit["by_relevance"])
        if key and key in seen:
            unit = {**unit, "by_relevance": [], "relevance_same_as": seen[key]}
        elif key:
            seen[key] = str(unit["label"])
        out.append(unit)
    return out
