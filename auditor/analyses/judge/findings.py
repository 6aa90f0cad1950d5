"""The judge's findings, metrics and summary, from its rows of numbers."""


from __future__ import annotations

import math


from auditor.analyses.judge.metrics import Estimate, JudgeRow, Reference
from auditor.analyses.judge.report import class_name, describe
from auditor.schema.findings import DefaultRule, Finding, Findings, FindingSpec, Severity


from auditor.analyses.judge.params import JudgeParams


DEFAULT_RULES = (
    DefaultRule("generated samples stay recognizable", metric="judge.intact_confidence", max_drop=0.05, critical=False,
                optional=True,
                comments={"max_drop": "the classifier judge's mean confidence, against the last release's generator",
                          "optional": "generators only, and only with a classifier judge"}),
)
_DRAWS_ONE_CLASS = DefaultRule("no new generator module draws one class alone", severity="info", fail_on_new=True,
                               critical=False)

FINDINGS = Findings(
    "judge",
    FindingSpec("main_path", Severity.INFO,
                "replacing any of several generator modules by its mean makes every sample the same image (diversity "
                "−99.9% or less): one finding for all of them, since each says only that every sample passes through "
                "it"),
    FindingSpec("critical_module", Severity.INFO,
                "ablating a generator module lowers the discriminator's mean realness by at least `critical_drop` of "
                "the intact samples' (and the drop's interval excludes 0): the samples stop looking real; or it "
                "lowers the samples' diversity by at least `critical_drop` (interval excluding 0): the generator "
                "draws (nearly) one image, even where the discriminator is fooled by it"),
    FindingSpec("class_specific", Severity.INFO,
                "ablating a generator module or unit makes one class vanish: its share of the samples falls by at "
                "least `class_drop` of its own (interval excluding 0), at least `class_gap` more than any other "
                "class's; names the module and the class", rule=_DRAWS_ONE_CLASS),
    FindingSpec("redundant", Severity.INFO,
                "an equivalence: the intervals of the realness and confidence drops, of the relative diversity "
                "change, and the class shift all lie within ±`redundant_margin`: no judge moves (reported at the "
                "outermost such module)"),
)
"""Every finding the judge analysis gives (docs/findings.md is written from these)."""


def _by(row: JudgeRow) -> str:
    """What replaced the output, after "by": "its mean", "zeros", "another sample's output"."""
    replaced = row.target.replaced
    return f"its {replaced}" if replaced == "mean" else replaced


def _module_rows(rows: list[JudgeRow]) -> list[JudgeRow]:
    return [r for r in rows if r.target.kind in ("block", "module")]


def findings_of(ref: Reference, rows: list[JudgeRow], names: list[str], p: JudgeParams
              ) -> tuple[list[Finding], dict[str, int]]:
    """Every judge finding: the main path and the critical modules, the class-specific ones, the redundant ones;
    the counts of each."""
    over = f"{p.confidence:.0%} interval over {len(ref.groups)} noise batches"
    twins = _twins(rows)
    findings, critical, path = _critical(ref, rows, p, twins, over)
    specific = _class_specific(ref, rows, names, p, twins)
    redundant = _redundant(rows, p, over)
    counts = {"critical_modules": len(critical), "main_path_modules": len(path), "class_specific": len(specific),
              "redundant_modules": len(redundant)}
    return findings + specific + redundant, counts


def _critical(ref: Reference, rows: list[JudgeRow], p: JudgeParams, twins: dict[int, JudgeRow], over: str
              ) -> tuple[list[Finding], list[JudgeRow], list[JudgeRow]]:
    """The main path finding and one per other critical module; the critical rows and those on the path."""
    findings: list[Finding] = []

    def unreal(r: JudgeRow) -> bool:
        return r.relative_realness_drop >= p.critical_drop and r.realness_drop.low > 0

    def uniform(r: JudgeRow) -> bool:
        d = r.diversity_change
        return d is not None and d.value <= -p.critical_drop and d.high < 0

    twins = _twins(rows)
    critical = sorted((r for r in _module_rows(rows) if unreal(r) or uniform(r)),
                      key=lambda r: (-r.realness_drop.value if unreal(r) else math.inf, r.diversity_change.value
                                     if r.diversity_change is not None else 0.0))
    one_image = [r for r in _module_rows(rows) if any(r is c for c in critical) and _one_image(r)]  # model order
    path = one_image if len(one_image) > 1 else []
    if path:
        findings.append(_main_path_finding(ref, path, p))
    on_path = {id(r) for r in path}
    for row in [r for r in critical if id(r) not in on_path and id(r) not in twins]:
        d, div = row.realness_drop, row.diversity_change
        realness = (f"the discriminator's mean realness falls from {ref.realness:.3f} to {row.realness:.3f} "
                    f"({-row.relative_realness_drop * 100:.0f}%; drop {d.low:.3f}–{d.high:.3f}, {over})")
        if unreal(row):
            what = f"collapses the samples' realness: {realness}"
            if row.confidence_drop is not None:
                what += f"; the classifier's confidence falls by {row.confidence_drop.value * 100:.1f} points"
            if div is not None and math.isfinite(div.value):
                what += f" and the samples' diversity changes by {div.value * 100:+.0f}%"
        else:
            assert div is not None
            span = f"{-div.high * 100:.0f}–{-div.low * 100:.0f}%, " if round(div.high * 100) != round(div.low * 100) \
                else ""
            what = (f"collapses the samples' diversity by {-div.value * 100:.0f}% ({span}{over})"
                    f"{': every sample is the same image' if div.value <= -0.999 else ''}"
                    f", while the discriminator's mean realness moves only from {ref.realness:.3f} to "
                    f"{row.realness:.3f}: it does not see what was lost")
        findings.append(FINDINGS.finding(
            "critical_module", module=row.target.name,
            message=f"Replacing the output of {describe(row)} by {_by(row)} {what}{_same_as(row, rows, twins)}.",
            evidence=_evidence(row)))

    return findings, critical, path


def _class_specific(ref: Reference, rows: list[JudgeRow], names: list[str], p: JudgeParams, twins: dict[int, JudgeRow]
                    ) -> list[Finding]:
    findings: list[Finding] = []
    specific = []
    hist = ref.histogram
    for row in rows:
        if hist is None or len(row.class_drops) < 2 or id(row) in twins:
            continue
        relative = sorted(((row.relative_class_drop(c, ref), c) for c in row.class_drops), reverse=True)
        (top, c), (second, _) = relative[0], relative[1]
        if top >= p.class_drop and top - second >= p.class_gap and row.class_drops[c].low > 0:
            specific.append((top - second, row, c, top, second))
    specific.sort(key=lambda item: -item[0])
    for _, row, c, top, second in specific:
        assert hist is not None and row.shares is not None
        name = class_name(c, names)
        findings.append(FINDINGS.finding(
            "class_specific", module=row.target.name,
            message=(f"Ablating {describe(row)} makes class {name!r} vanish from the samples: the classifier assigns "
                     f"it {float(row.shares[c]) * 100:.1f}% of them instead of {float(hist[c]) * 100:.1f}% "
                     f"({-top * 100:.0f}%), while no other class loses more than {max(second, 0.0) * 100:.0f}% of its "
                     f"share: what draws {name!r} passes through it{_same_as(row, rows, twins)}."),
            evidence={**_evidence(row), "class": name, "class_share_intact": float(hist[c]),
                      "class_share_ablated": float(row.shares[c]), "relative_drop": top,
                      "next_relative_drop": second}))

    return findings


def _redundant(rows: list[JudgeRow], p: JudgeParams, over: str) -> list[Finding]:
    """One finding per outermost module whose ablation moves no judge."""
    findings: list[Finding] = []
    m = p.redundant_margin
    redundant = [r for r in _module_rows(rows) if _is_redundant(r, m)]
    names_redundant = {r.target.name for r in redundant}
    outermost = [r for r in redundant if not any(r.target.name.startswith(f"{n}.") for n in names_redundant)]
    for row in outermost:
        parts = [f"realness by {_range(row.realness_drop, neg=True)}"]
        if row.confidence_drop is not None:
            parts.append(f"confidence by {_range(row.confidence_drop, neg=True)}")
        if row.class_shift is not None:
            parts.append(f"at most {max(row.class_shift.high, 0.0) * 100:.1f}% of samples change class")
        if row.diversity_change is not None:
            parts.append(f"diversity by {_range(row.diversity_change, pct=True)}")
        findings.append(FINDINGS.finding(
            "redundant", module=row.target.name,
            message=(f"Replacing the output of {describe(row)} by {_by(row)} moves no judge: "
                     f"{'; '.join(parts)} ({over}, all within ±{m:g}). The generator does not need it as trained."),
            evidence=_evidence(row)))
    return findings


def _one_image(row: JudgeRow) -> bool:
    """Every sample is (nearly) the same image: the diversity fell by 99.9% or more."""
    return row.diversity_change is not None and row.diversity_change.value <= -0.999


def _main_path_finding(ref: Reference, path: list[JudgeRow], p: JudgeParams) -> Finding:
    """One finding for the modules whose mean makes every sample the same image: a sequential generator's
    stages each carry everything the noise says, so each alone says only that it is on the path."""
    names = [r.target.name for r in path]
    chosen = set(names)
    outer = [n for n in names if not any(n.startswith(f"{o}.") for o in chosen)]
    inner = len(names) - len(outer)
    shown = ", ".join(outer[:6]) + (f" and {len(outer) - 6} more" if len(outer) > 6 else "")
    inside = f" (with {inner} of the modules inside {'it' if len(outer) == 1 else 'them'})" if inner else ""
    realness = [r.realness for r in path]
    replaced = sorted({_by(r) for r in path})
    return FINDINGS.finding(
        "main_path", module=None,
        message=(f"The generator draws one image for every noise vector when any of {len(names)} modules on its main "
                 f"path is replaced by {' or '.join(replaced)}: {shown}{inside}. The discriminator then rates the "
                 f"samples {min(realness):.3f}–{max(realness):.3f} real (intact {ref.realness:.3f}): every sample "
                 "passes through them, so this says they are on the path, not what each draws (the table has "
                 "every row)."),
        evidence={"modules": ", ".join(names), "count": len(names), "outermost": ", ".join(outer),
                  "realness_min": min(realness), "realness_max": max(realness), "intact_realness": ref.realness,
                  "critical_drop": p.critical_drop})


def _numbers(row: JudgeRow) -> tuple[float, ...]:
    values = [row.realness, row.sample_change, *(e.value for e in (row.confidence_drop, row.class_shift,
                                                                    row.diversity_change) if e is not None)]
    return tuple(float(f"{v:.6g}") for v in values)  # a norm after its conv: equal but for float rounding


def _twins(rows: list[JudgeRow]) -> dict[int, JudgeRow]:
    """Rows whose ablation gives the same numbers as an earlier row's (a norm right after a conv: replacing
    either by its mean is the same generator), by id, to the row they repeat."""
    first: dict[tuple[float, ...], JudgeRow] = {}
    twins: dict[int, JudgeRow] = {}
    for row in rows:
        if row.target.kind not in ("block", "module"):
            continue
        key = _numbers(row)
        if key in first:
            twins[id(row)] = first[key]
        else:
            first[key] = row
    return twins


def _same_as(row: JudgeRow, rows: list[JudgeRow], twins: dict[int, JudgeRow]) -> str:
    same = [r.target.name for r in rows if twins.get(id(r)) is row]
    return f" (ablating {', '.join(same)} gives the same numbers)" if same else ""


def _is_redundant(row: JudgeRow, m: float) -> bool:
    """An equivalence: every judge's whole interval lies within ±m."""
    checks = [row.realness_drop, row.confidence_drop, row.diversity_change]
    if any(e is not None and not (-m <= e.low and e.high <= m) for e in checks):
        return False
    return row.class_shift is None or row.class_shift.high <= m


def _range(e: Estimate, *, neg: bool = False, pct: bool = False) -> str:
    low, high = (-e.high + 0.0, -e.low + 0.0) if neg else (e.low + 0.0, e.high + 0.0)  # + 0.0: no "-0.000"
    if pct:
        return f"{low * 100:+.1f}% to {high * 100:+.1f}%"
    return f"{low:+.3f} to {high:+.3f}"


def _evidence(row: JudgeRow) -> dict[str, float | str]:
    values: dict[str, float | str] = {"ablated_as": row.target.replaced, "realness_ablated": round(row.realness, 4)}
    for key, value in row.module_metrics().items():
        values[key.removeprefix("judge_")] = round(value, 4) if math.isfinite(value) else str(value)
    values["realness_drop_low"] = round(row.realness_drop.low, 4)
    values["realness_drop_high"] = round(row.realness_drop.high, 4)
    return values


def metrics_of(ref: Reference, rows: list[JudgeRow], counts: dict[str, int]) -> dict[str, float]:
    metrics = {"intact_realness": ref.realness, "intact_diversity": ref.diversity, "ablated": float(len(rows)),
               **{k: float(v) for k, v in counts.items()}}
    if ref.verdicts.probabilities is not None:
        metrics["intact_confidence"] = ref.confidence_mean
    if math.isfinite(ref.condition_accuracy):
        metrics["intact_condition_accuracy"] = ref.condition_accuracy
    drops = [r.realness_drop.value for r in _module_rows(rows)]
    if drops:
        metrics["max_realness_drop"] = max(drops)
    return metrics


_REPLACED = {"mean": "its per-unit mean", "zero": "zeros",
             "resample": "the output it gives another sample of the same batch"}


def summary_of(ref: Reference, rows: list[JudgeRow], counts: dict[str, int], features_note: str, p: JudgeParams, *,
             n_groups: int) -> str:
    n = len(ref.samples)
    modules = len(_module_rows(rows))
    units = len(rows) - modules
    parts = [f"Each of {modules} generator module{'s' * (modules != 1)}"
             + (f" and {units} unit{'s' * (units != 1)}" if units else "")
             + f" was ablated (its output replaced by {_REPLACED[p.mode]}) and the generator fed the same {n} noise "
               f"vectors; intervals are over {n_groups} noise batches."]
    judged = f"The discriminator rates the intact samples {ref.realness:.3f} real on average"
    if ref.verdicts.probabilities is not None:
        judged += f"; the classifier is {ref.confidence_mean * 100:.1f}% sure of their class on average"
        if math.isfinite(ref.condition_accuracy):
            judged += f" and sees the asked-for class in {ref.condition_accuracy * 100:.1f}% of them"
    parts.append(judged + f". Diversity is measured in {features_note}.")
    def count(n: int, one: str, many: str) -> str:
        return f"{n} {one if n == 1 else many}"
    parts.append(f"{count(counts['critical_modules'], 'module collapses', 'modules collapse')} realness or diversity, "
                 f"{count(counts['class_specific'], 'ablation makes', 'ablations make')} one class vanish, "
                 f"{count(counts['redundant_modules'], 'module moves', 'modules move')} no judge.")
    return " ".join(parts)


