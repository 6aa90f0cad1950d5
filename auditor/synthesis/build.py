"""One card per module: identity, the role rules' clauses, agreement between lines of evidence, what is
missing, thumbnails and the importance the report orders cards by. Reads only the AuditReport."""

from __future__ import annotations

from typing import Any

from auditor.schema.cards import UNCLEAR, Card, CardsConfig, Clause, Evidence, Thumbnail, tag_kind
from auditor.schema.report import AuditReport
from auditor.synthesis.roles import (CRITICAL, DEAD, DIVERSITY, IN_CONTEXT, INDUCTION, LOW_LEVEL, MAIN_PATH,
                                     NOT_LEARNED, PREVIOUS_TOKEN, PRUNABLE, REALNESS, REDUNDANT, RULES, UNUSED,
                                     ablation_of, beats_random_init, interval, points, probe_reading)
from auditor.synthesis.view import AuditView, base_module, has_weights, members

CARD_ANALYSES = ("inventory", "gradients", "ablation", "judge", "probes", "features", "weights")
"""The analyses whose per-module numbers a card joins, in the order its `missing` lists them."""

MAX_BAR_CLASSES = 12
IMPORTANCE = {"class-specific": 3.0, "draws class": 3.0, CRITICAL: 2.0, REALNESS: 2.0, DIVERSITY: 2.0,
              IN_CONTEXT: 3.0, INDUCTION: 3.0, PREVIOUS_TOKEN: 2.0,
              DEAD: 1.0, UNUSED: 1.0, NOT_LEARNED: 1.0, LOW_LEVEL: 1.0, REDUNDANT: 0.5, PRUNABLE: 0.5}
"""What each tag adds to a card's importance (docs/atlas.md); `carries` adds 3 where the property first
becomes decodable or peaks, else 0.5; `main path` 1 for the outermost modules of the group, else 0.25; the
share of the largest contribution adds up to 1."""

_PHRASES = {MAIN_PATH: "is on the main path", CRITICAL: "is critical", REDUNDANT: "is redundant",
            PRUNABLE: "can be pruned", UNUSED: "is unused by the decision", DEAD: "has dead units",
            NOT_LEARNED: "looks not learned", LOW_LEVEL: "computes low-level features",
            REALNESS: "is critical for realness", DIVERSITY: "is critical for diversity",
            IN_CONTEXT: "serves in-context copying", INDUCTION: "holds an induction head",
            PREVIOUS_TOKEN: "holds a previous-token head",
            UNCLEAR: "has no role that passed its test"}


def card_config(report: AuditReport) -> CardsConfig:
    """The `[cards]` thresholds the audit ran with (its recorded config), else the defaults."""
    raw = report.metadata.config.get("cards")
    try:
        return CardsConfig.model_validate(raw) if isinstance(raw, dict) else CardsConfig()
    except ValueError:
        return CardsConfig()


def card_modules(view: AuditView) -> list[str]:
    """The blocks, the modules a finding names (on itself or in a group's evidence), and with `leaves` every
    leaf; in model order."""
    report = view.report
    names = {b.name for b in view.blocks}
    for finding in report.findings:
        if finding.module:
            names.add(base_module(finding.module))
        names.update(members(finding))
    if view.config.leaves:
        parents = {row.parent for row in report.modules}
        names.update(row.name for row in report.modules if row.name not in parents and row.call is None)
    order = {row.name: i for i, row in enumerate(report.modules)}
    return sorted((n for n in names if n and n in order), key=lambda n: order[n])


def synthesize(report: AuditReport, config: CardsConfig | None = None) -> list[Card]:
    """Every card of the audit, from its sections' module metrics, findings, figures and details.

    Args:
        report: an audit (fresh, or read from an audit.json of any schema version).
        config: the role thresholds; default: those the audit ran with.

    Returns:
        The cards in model order.
    """
    view = AuditView.of(report, config or card_config(report))
    kinds = {b.name: b.kind for b in view.blocks}
    names = card_modules(view)
    view.card_names = frozenset(names)
    return [build_card(view, name, block=kinds.get(name)) for name in names]


def build_card(view: AuditView, module: str, *, block: str | None) -> Card:
    row = view.rows.get(module)
    clauses = [clause for rule in RULES for clause in rule(view, module)]
    tags = list(dict.fromkeys(c.tag for c in clauses if c.tag))
    context = _contribution(view, module) + _text_units(view, module) + _neuron_ablation(view, module) + \
        _attention(view, module)
    agreement = _agreement(view, module, tags)
    missing = _missing(view, module, block=block)
    if not tags:
        tags = [UNCLEAR]
        what = (f"; not measured: {', '.join(f'{k} ({v})' for k, v in missing.items())}" if missing else
                "; the analyses that measured it found nothing that passed a test")
        context.append(Clause(text=f"No role passed its test{what}.", tag=UNCLEAR))
    elif missing:
        context.append(Clause(text=f"Not measured here: {', '.join(f'{k} ({v})' for k, v in missing.items())}."))
    every = clauses + context
    statement = " ".join([_headline(module, tags), *(c.text for c in every), *agreement])
    evidence = [e for c in every for e in c.evidence]
    return Card(
        module=module, type=row.type if row else "", block=block, params=row.params if row else 0,
        output_shape=row.output_shape if row else None, calls_per_forward=row.calls_per_forward if row else 0.0,
        time_share=row.time_share if row else None, tags=tags, statement=statement, clauses=every,
        evidence=evidence, agreement=agreement, missing=list(missing), missing_why=missing,
        thumbnails=_thumbnails(view, module, tags), importance=round(_importance(view, module, tags, clauses), 4))


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _headline(module: str, tags: list[str]) -> str:
    phrases: list[str] = []
    carried = [t.split(":", 1)[1].strip() for t in tags if tag_kind(t) == "carries"]
    for tag in tags:
        kind = tag_kind(tag)
        if kind == "carries":
            if carried:
                phrases.append("carries " + _join([f"'{c}'" for c in carried]))
                carried = []
        elif kind == "class-specific":
            phrases.append(f"is specific to class '{tag.split(':', 1)[1].strip()}'")
        elif tag.startswith("draws class "):
            phrases.append(f"draws class '{tag.removeprefix('draws class ')}'")
        elif tag in _PHRASES:
            phrases.append(_PHRASES[tag])
    return f"{module} {_join(phrases)}." if phrases else f"{module}."


def _contribution(view: AuditView, module: str) -> list[Clause]:
    share = _contribution_share(view, module)
    if share <= 0 or share < view.config.high_contribution:
        return []
    what = "the next-token prediction" if view.report.metadata.task == "causal_lm" else "the decision"
    return [Clause(text=(f"Its |gradient × activation| is {share:.0%} of the largest among {view.compared_among}: "
                         f"{what} is sensitive to its output."),
                   evidence=[Evidence(section="gradients", key="abs_grad_x_act",
                                      value=view.value("gradients", module, "abs_grad_x_act"))])]


def _contribution_share(view: AuditView, module: str) -> float:
    value = view.value("gradients", module, "abs_grad_x_act")
    if value is None or view.max_contribution <= 0 or module in view.in_series or \
            (view.contributors is not None and module not in view.contributors):
        return 0.0
    return value / view.max_contribution


def _text_units(view: AuditView, module: str) -> list[Clause]:
    """Its most relevant units' top tokens (features on a text model); a language model's MLP neurons (features of
    `<layer>.mlp.act`) on the card of the nearest module that has one: the tokens they fire on and promote."""
    cards = _card_names(view)
    clauses = []
    for entry in view.details("features").get("text_units", []) or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("module"), str):
            continue
        units = [u for u in (entry.get("units") or []) if isinstance(u, dict)]
        if any("fires_on" in u or "promotes" in u for u in units):
            if _nearest_card(entry["module"], cards) == module:
                clauses += _neurons_clause(entry["module"] if entry["module"] != module else None, units)
            continue
        if entry["module"] != module:
            continue
        tokens: list[str] = []
        for unit in units[:3]:
            for top in (unit.get("by_relevance") or unit.get("by_activation") or [])[:4]:
                token = str(top.get("token", "")).strip()
                if token and token not in tokens:
                    tokens.append(token)
        if tokens:
            shown = ", ".join(f"'{t}'" for t in tokens[:6])
            return [Clause(text=f"Its most relevant units fire on {shown}.",
                           evidence=[Evidence(section="features", key="details:text_units", value=shown)])]
    return clauses


def _neuron_ablation(view: AuditView, module: str) -> list[Clause]:
    """A language model's MLP neurons ablated one at a time (`[analyses.lm_ablation] neurons`), on the card of the
    nearest module that has one: the largest loss increases, and how many change nothing."""
    found = view.sections.get("lm_ablation")
    if found is None:
        return []
    cards = _card_names(view)
    groups: dict[str, dict[str, float]] = {}
    for name, metrics in found.module_metrics.items():
        act, sep, unit = name.rpartition("#")
        if sep and unit.isdigit() and "loss_increase" in metrics and _nearest_card(act, cards) == module:
            groups.setdefault(act, {})[unit] = metrics["loss_increase"]
    unused = float(found.details.get("unused", 0.01))  # the analysis's own threshold
    clauses = []
    for act, values in groups.items():
        ranked = sorted(values, key=lambda u: -values[u])
        top = ranked[0]
        few = sum(abs(v) < unused for v in values.values())
        where = f" of {act}" if act != module else ""
        text = (f"Ablated one at a time, the {len(values)} MLP neurons{where} raise the next-token loss by at most "
                f"{values[top]:.3f} nats (#{top}" + (f", then #{ranked[1]}" if len(ranked) > 1 else "") + "); "
                f"{few} change it by less than {unused:g}.")
        clauses.append(Clause(text=text, evidence=[Evidence(section="lm_ablation", key="loss_increase",
                                                            value=round(values[top], 4))]))
    return clauses


def _card_names(view: AuditView) -> frozenset[str]:
    """The modules with a card, computed once per view (every card's clauses ask)."""
    if view.card_names is None:
        view.card_names = frozenset(card_modules(view))
    return view.card_names


def _nearest_card(name: str, cards: frozenset[str]) -> str | None:
    """`name` itself or its nearest ancestor with a card."""
    while name:
        if name in cards:
            return name
        name = name.rpartition(".")[0]
    return None


def _neurons_clause(name: str | None, units: list[dict[str, Any]]) -> list[Clause]:
    """'Its most relevant MLP neurons 3 and 17 (transformer.h.0.mlp.act) fire on 'x', 'y' and promote 'z' directly.'"""
    ids: list[str] = []
    fired: list[str] = []
    promoted: list[str] = []
    for unit in units[:3]:
        mine = [[str(t.get("token", "")).strip() for t in (unit.get(key) or [])[:2]] for key in ("fires_on", "promotes")]
        if any(t for tokens in mine for t in tokens):
            ids.append(str(unit.get("unit")))
            fired += [t for t in mine[0] if t and t not in fired]
            promoted += [t for t in mine[1] if t and t not in promoted]
    if not ids:
        return []

    def quoted(tokens: list[str]) -> str:
        return ", ".join(f"'{t}'" for t in tokens[:6])

    one = len(ids) == 1
    parts = ([f"fire{'s' * one} on {quoted(fired)}"] if fired else []) + \
        ([f"promote{'s' * one} {quoted(promoted)} directly"] if promoted else [])
    where = f" ({name})" if name else ""  # named where the card is an ancestor's
    text = f"Its most relevant MLP neuron{'s' * (not one)} {_join(ids)}{where} {' and '.join(parts)}."
    return [Clause(text=text, evidence=[Evidence(section="features", key="details:text_units",
                                                 value="; ".join(parts))])]


def _attention(view: AuditView, module: str) -> list[Clause]:
    """Its attention heads: mean distance attended, and the heads that look at nearly one position."""
    attention = view.details("features").get("attention") or {}
    for layer in attention.get("layers", []) if isinstance(attention, dict) else []:
        name = str(layer.get("module", ""))
        if name != module and not name.startswith(f"{module}."):
            continue
        distance = [float(d) for d in layer.get("distance") or []]
        entropy = [float(e) for e in layer.get("entropy") or []]
        if not distance:
            continue
        sharp = [str(h) for h, e in enumerate(entropy) if e < 0.1]
        text = (f"Its {len(distance)} attention heads look {sum(distance) / len(distance):.1f} tokens away on "
                f"average (from {min(distance):.1f} to {max(distance):.1f})")
        if sharp:
            text += f"; head{'s' * (len(sharp) > 1)} {', '.join(sharp)} attend{'s' * (len(sharp) == 1)} to almost " \
                f"one position{' each' * (len(sharp) > 1)}."
        else:
            text += "."
        return [Clause(text=text, evidence=[Evidence(section="features", key="attention_distance", value=round(
            sum(distance) / len(distance), 3), module=name)])]
    return []


def _agreement(view: AuditView, module: str, tags: list[str]) -> list[str]:
    """The documented agreement rules between contribution, ablation and probes."""
    ablation = ablation_of(view, module)
    if ablation is None:
        return []
    margin = view.config.equivalence
    no_effect = ablation.no_effect(margin)
    effect = ablation.effect(margin, embedding=view.embedding)
    span = interval(ablation.low, ablation.high)
    carried = [t.split(":", 1)[1].strip() for t in tags if tag_kind(t) == "carries"]
    out = []
    share = _contribution_share(view, module)
    if share >= view.config.high_contribution and no_effect:
        out.append(f"Its contribution is high ({share:.0%} of the largest) but removing it has no effect "
                   f"(drop {span}, within ±{points(margin)}): another module compensates for it.")
    if carried and no_effect:
        out.append(f"It carries {_join([repr(c) for c in carried])}, but removing it has no effect (drop {span}): "
                   "the information is present here but unused, or also available elsewhere.")
    if effect and not carried and view.properties and view.measured("probes", module):
        names = _join([f"'{p.name}'" for p in view.properties])
        what = f"changes the embedding by {ablation.drop:.3g}" if view.embedding else \
            f"costs {points(ablation.drop)} {span}"
        # A property can be decodable here and still fail its test: as decodable from the re-initialized network
        # (the module passes on what its input already holds), so say which of the two it is.
        as_random = [f"'{p.name}'" for p in view.properties if _decodable_as_at_random(view, module, p.name, p.threshold)]
        if as_random:
            out.append(f"Removing it {what}; {_join(as_random)} is decodable here, but no better than from the "
                       "re-initialized network: what it does for the decision is not what the probes measure.")
        else:
            out.append(f"Removing it {what}, yet no probed property ({names}) is decodable here: it does something "
                       "the probes did not ask about.")
    return out


def _decodable_as_at_random(view: AuditView, module: str, prop: str, threshold: float | None) -> bool:
    """The probe clears the shuffled-label bar (the same bar as `carries`), but not the re-initialized network."""
    reading = probe_reading(view, module, prop, threshold)
    if reading is None or reading[3] is None:
        return False
    _, low, _, random_init, bar = reading
    return low > bar and not beats_random_init(view, low, random_init)


def _expected(view: AuditView, analysis: str, module: str, *, block: str | None) -> bool:
    """Whether an analysis that ran should have measured this module."""
    if analysis in ("inventory", "gradients"):
        return True
    if analysis in ("ablation", "probes"):
        return block is not None and not view.generator
    if analysis == "judge":
        return block is not None and view.generator
    if analysis == "weights":
        return has_weights(view.rows.get(module))
    return False


def _missing(view: AuditView, module: str, *, block: str | None) -> dict[str, str]:
    missing: dict[str, str] = {}
    failed = {s.id: s for s in view.report.sections if s.error is not None}
    for analysis in CARD_ANALYSES:
        if analysis in view.report.not_run:
            if analysis in ("judge",) and not view.generator or analysis in ("ablation", "probes", "gradients") \
                    and view.generator:
                continue
            missing[analysis] = f"not run: {view.report.not_run[analysis]}"
        elif analysis in failed:
            error = failed[analysis].error
            missing[analysis] = f"failed: {error.type if error else 'error'}"
        elif analysis in view.sections and _expected(view, analysis, module, block=block) \
                and not view.measured(analysis, module):
            skipped = view.details(analysis).get("skipped")
            reason = skipped.get(module) if isinstance(skipped, dict) else None
            missing[analysis] = f"not measured for this module{f': {reason}' if reason else ''}"
    return missing


def _thumbnails(view: AuditView, module: str, tags: list[str]) -> list[Thumbnail]:
    thumbs: list[Thumbnail] = []
    figures = view.figure_ids("features")
    for prefix, title in (("features.gallery.", "What its units respond to"), ("features.maps.", "Its feature maps")):
        if f"{prefix}{module}" in figures:
            thumbs.append(Thumbnail(kind="figure", title=title, section="features", figure=f"{prefix}{module}"))
    for entry in view.details("features").get("text_units", []) or []:
        if isinstance(entry, dict) and entry.get("module") == module:
            search = [u.get("search") for u in entry.get("units") or [] if isinstance(u.get("search"), dict)]
            if search and search[0].get("text"):
                thumbs.append(Thumbnail(kind="tokens", title="Tokens that excite its top unit most (search)",
                                        section="features", text=str(search[0]["text"])))
    attention = view.details("features").get("attention") or {}
    layers = [str(layer.get("module", "")) for layer in attention.get("layers", [])] if isinstance(attention, dict) else []
    if any(n == module or n.startswith(f"{module}.") for n in layers) and "features.attention_heads" in figures:
        thumbs.append(Thumbnail(kind="figure", title="Attention heads", section="features",
                                figure="features.attention_heads"))
    classes = view.report.metadata.class_names
    # On the main path the bars only show which class the model collapses to: left out.
    if 2 <= len(classes) <= MAX_BAR_CLASSES and MAIN_PATH not in tags:
        bars = {c: v for c in classes if (v := view.value("ablation", module, f"ablation_drop/{c}")) is not None}
        if len(bars) == len(classes) and any(abs(v) > 0 for v in bars.values()):
            thumbs.append(Thumbnail(kind="bars", title="Recall lost per class when it is ablated", section="ablation",
                                    bars={c: round(v, 4) for c, v in bars.items()}))
    return thumbs


def _importance(view: AuditView, module: str, tags: list[str], clauses: list[Clause]) -> float:
    score = 0.0
    for tag in tags:
        kind = tag_kind(tag)
        if kind == "carries":
            text = next((c.text for c in clauses if c.tag == tag), "")
            score += 3.0 if "first becomes decodable" in text or "peak over layers" in text else 0.5
        elif kind == MAIN_PATH:
            outermost = any(module in [m.strip() for m in str(f.evidence.get("outermost", "")).split(",")]
                            for f in view.groups.get(module, []))
            score += 1.0 if outermost else 0.25
        elif tag.startswith("draws class"):
            score += IMPORTANCE["draws class"]
        else:
            score += IMPORTANCE.get(kind, 0.0)
    return score + min(_contribution_share(view, module), 1.0)


__all__ = ["CARD_ANALYSES", "build_card", "card_config", "card_modules", "synthesize"]
