"""The logit lens and direct logit attribution of a causal language model.

Logit lens (nostalgebraist, 2020): the final norm and the unembedding applied to the residual stream after
every layer; per layer, the next-token loss on the audited tokens and how often its top-1 token is the model's
own. Direct logit attribution (Elhage et al., 2021): each attention head's and MLP's output, through the final
norm with its scale frozen at its value on the whole stream, onto the unembedding of the correct next token,
centred on the mean unembedding (so a part that raises every logit alike gets nothing), averaged over the
audited tokens. The parts (embeddings, heads, the attention output biases, MLPs) sum to the model's own
centred logit of the correct token, up to the final norm's bias.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from auditor.engine.analysis import Analysis, AuditContext, PlanContext
from auditor.kit.lm import (
    LMLayout,
    audited_positions,
    first_tensor,
    frozen_norm,
    hooks,
    lm_layout,
    projection_rows,
    unembedding_weight,
)
from auditor.schema.report import Cost, Section, Table
from auditor.subject import Task
from auditor.analyses.lens.findings import FINDINGS
from auditor.schema.findings import Findings


class LensParams(BaseModel):
    """`[analyses.lens]`: how many audited tokens the lens reads, and the agreement that counts as formed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_tokens: int = Field(16384, ge=1)
    """The lens and the attribution read the audited tokens of the first texts up to this many tokens."""
    formed: float = Field(0.5, gt=0.0, le=1.0)
    """The prediction is formed at the first layer whose lens agrees with the model's top-1 this often."""
    top: int = Field(5, ge=1)


class Lens(Analysis):
    """Per-layer logit lens (loss, top-1 agreement) and direct logit attribution of every head and MLP."""

    id: ClassVar[str] = "lens"
    title: ClassVar[str] = "Logit lens and direct logit attribution"
    findings: ClassVar[Findings] = FINDINGS
    modalities = frozenset({"text"})
    tasks: ClassVar[frozenset[Task]] = frozenset({"causal_lm"})
    params_type: ClassVar[type[BaseModel]] = LensParams
    cost_note: ClassVar[str] = "one forward over (up to max_tokens of) the audit data, plus one unembedding per layer"

    def __init__(self, params: LensParams | None = None) -> None:
        self.params: LensParams = params or LensParams()

    def not_applicable(self, ctx: PlanContext) -> str | None:
        reason = super().not_applicable(ctx)
        if reason is None:
            try:
                lm_layout(ctx.subject.model)
            except ValueError as err:
                return f"the model's layers cannot be read: {err}"
        return reason

    def cost(self, ctx: PlanContext) -> Cost:
        return Cost(forwards=1.0, note=self.cost_note)

    def run(self, ctx: AuditContext) -> Section:
        with torch.no_grad():
            return self._run(ctx)

    def _run(self, ctx: AuditContext) -> Section:
        subject, model = ctx.subject, ctx.subject.model
        layout = lm_layout(model)
        norm = model.get_submodule(layout.final_norm) if layout.final_norm else None
        unembed = model.get_submodule(layout.unembed)
        w_u = unembedding_weight(model, layout).double()
        centred = w_u - w_u.mean(dim=0, keepdim=True)
        names = ["embeddings", *[f"{part.attention}#head{h}" for part in layout.layers for h in range(layout.heads)],
                 *[f"{part.attention} (output bias)" for part in layout.layers],
                 *[part.mlp for part in layout.layers if part.mlp]]
        dla = {n: 0.0 for n in names}
        lens_loss = np.zeros(len(layout.layers) + 1)
        lens_agree = np.zeros(len(layout.layers) + 1)
        own_logit, remainder, tokens = 0.0, 0.0, 0
        for inputs in self._batches(ctx):
            where = audited_positions(inputs)
            if not bool(where.any()):
                continue
            nxt = inputs["input_ids"].roll(-1, dims=1)[where]
            got = _run(model, subject, layout, inputs)
            resid_final = got["final"][where].double()
            model_top = got["logits"][where].argmax(dim=-1)
            target = centred[nxt]  # (n, d)
            parts = {"embeddings": got["resid"][0][where]}
            for i, part in enumerate(layout.layers):
                proj = model.get_submodule(part.out_proj)
                x = got["proj_in"][i][where].double()
                for h in range(layout.heads):
                    d = layout.head_dim
                    parts[f"{part.attention}#head{h}"] = x[:, h * d:(h + 1) * d] @ projection_rows(proj, h, d).double()
                bias = getattr(proj, "bias", None)
                if isinstance(bias, torch.Tensor):
                    parts[f"{part.attention} (output bias)"] = bias.double().expand(x.shape[0], -1)
                if part.mlp:
                    parts[part.mlp] = got["mlp"][i][where]
            total = torch.zeros(())
            for name, value in parts.items():
                contribution = (frozen_norm(value.double(), resid_final, norm) * target).sum(dim=-1).sum()
                dla[name] += float(contribution)
                total = total + contribution
            final_logits = (_apply(norm, resid_final) * target).sum(dim=-1).sum()
            own_logit += float(final_logits)
            remainder += float(final_logits - total)
            for k, resid in enumerate(got["resid"]):
                logits = unembed(_apply(norm, resid[where].to(w_u.dtype).float()).float()).double()
                lens_loss[k] += float(torch.nn.functional.cross_entropy(logits, nxt, reduction="sum"))
                lens_agree[k] += float((logits.argmax(dim=-1) == model_top).double().sum())
            tokens += int(where.sum())
        if tokens == 0:
            raise ValueError("the audit texts hold no audited tokens")
        return self._section(layout, names, {k: v / tokens for k, v in dla.items()}, lens_loss / tokens,
                             lens_agree / tokens, own_logit / tokens, remainder / tokens, tokens)

    def _batches(self, ctx: AuditContext) -> list[dict[str, torch.Tensor]]:
        out, seen = [], 0
        for batch in ctx.subject.batches(ctx.config.batch_size):
            if seen >= self.params.max_tokens:
                break
            out.append(batch.inputs)
            seen += int(audited_positions(batch.inputs).sum())
        return out

    def _section(self, layout: LMLayout, names: list[str], dla: dict[str, float], lens_loss: np.ndarray,
                 lens_agree: np.ndarray, own_logit: float, remainder: float, tokens: int) -> Section:
        p = self.params
        layer_names = ["embeddings", *[part.name for part in layout.layers]]
        module_metrics: dict[str, dict[str, float]] = {}
        for name, loss, agree in zip(layer_names[1:], lens_loss[1:], lens_agree[1:], strict=True):
            module_metrics[name] = {"lens_loss": float(loss), "lens_top1_agreement": float(agree)}
        for name in names:
            if name != "embeddings" and "(output bias)" not in name:
                module_metrics.setdefault(name, {})["direct_logit_attribution"] = dla[name]
        formed = next((n for n, a in zip(layer_names, lens_agree, strict=True) if a >= p.formed), None)
        ranked = sorted((n for n in names if n != "embeddings" and "(output bias)" not in n), key=lambda n: -dla[n])
        findings = []
        if formed is not None:
            k = layer_names.index(formed)
            findings.append(FINDINGS.finding(
                "prediction_formed", module=None if formed == "embeddings" else formed,
                message=(f"The logit lens reads the model's own top-1 token from {formed} on (agreement "
                         f"{lens_agree[k]:.0%}, loss {lens_loss[k]:.3f} against {lens_loss[-1]:.3f} at the output)."),
                evidence={"layer": formed, "agreement": round(float(lens_agree[k]), 4),
                          "lens_loss": round(float(lens_loss[k]), 4), "threshold": p.formed}))
        if ranked and dla[ranked[0]] > 0:
            top = [n for n in ranked[:p.top] if dla[n] > 0]
            findings.append(FINDINGS.finding(
                "direct_contributors", module=top[0],
                message=("Largest direct contributions to the correct next token's logit: "
                         + ", ".join(f"{n} ({dla[n]:+.2f})" for n in top)
                         + f", of a mean centred logit of {own_logit:.2f} over {tokens:,} tokens."),
                evidence={"parts": ", ".join(top), "top": round(dla[top[0]], 4), "own_logit": round(own_logit, 4),
                          "tokens": tokens}))
        lens_rows = [[n, round(float(loss), 4), round(float(a), 4)]
                     for n, loss, a in zip(layer_names, lens_loss, lens_agree, strict=True)]
        dla_rows = [[n, round(dla[n], 4)] for n in names]
        tables = [
            Table(id="logit_lens", title="Logit lens: the residual stream after each layer, read out",
                  columns=["after", "loss (nats)", "top-1 agreement with the model"], rows=lens_rows),
            Table(id="direct_logit_attribution", title="Direct logit attribution onto the correct next token",
                  columns=["part", "mean centred logit"], rows=dla_rows,
                  caption=f"Mean over {tokens:,} audited tokens; the parts sum to {own_logit - remainder:.3f} of the "
                          f"model's {own_logit:.3f} (the rest: the final norm's bias)."),
        ]
        metrics = {"tokens": float(tokens), "own_centred_logit": own_logit, "unattributed": remainder,
                   "final_lens_agreement": float(lens_agree[-1])}
        summary = (f"Logit lens over {len(layout.layers)} layers and {tokens:,} tokens: the model's top-1 is readable "
                   f"from {formed or 'no layer'}" + (f"; the largest direct contribution: {ranked[0]} "
                                                      f"({dla[ranked[0]]:+.2f})." if ranked else "."))
        return Section(id=self.id, title=self.title, summary=summary, metrics=metrics, tables=tables,
                       findings=findings, module_metrics=module_metrics, details={"lens_layers": layer_names})


def _apply(norm: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    if norm is None:
        return x
    param = next(norm.parameters(), None)
    return norm(x.to(param.dtype) if param is not None else x).double()  # type: ignore[no-any-return]


def _run(model: nn.Module, subject: Any, layout: LMLayout, inputs: dict[str, torch.Tensor]) -> dict[str, Any]:
    """One forward recording the residual stream before layer 0 and after every layer, every output
    projection's input, every MLP's output, the final norm's input and the logits."""
    resid: list[torch.Tensor] = []
    proj_in: list[torch.Tensor] = []
    mlp: dict[int, torch.Tensor] = {}
    final: list[torch.Tensor] = []

    def after(i: int) -> Callable[..., None]:
        return lambda m, a, o: resid.append(first_tensor(o).detach())

    def store(i: int) -> Callable[..., None]:
        return lambda m, a, o: mlp.__setitem__(i, first_tensor(o).detach().double())

    forward = [(part.name, after(i)) for i, part in enumerate(layout.layers)]
    forward += [(part.mlp, store(i)) for i, part in enumerate(layout.layers) if part.mlp]
    pre = [(layout.layers[0].name, lambda m, a: resid.append(a[0].detach()))]  # layers take the stream first
    pre += [(part.out_proj, lambda m, a: proj_in.append(a[0].detach())) for part in layout.layers]
    if layout.final_norm:
        pre.append((layout.final_norm, lambda m, a: final.append(a[0].detach())))
    with torch.no_grad(), hooks(model, forward=forward, pre=pre):
        logits = subject.adapter.logits(model, inputs).detach()
    return {"resid": [r.double() for r in resid], "proj_in": proj_in, "mlp": [mlp.get(i) for i in range(len(layout.layers))],
            "final": final[0] if final else resid[-1], "logits": logits}
