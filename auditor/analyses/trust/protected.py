"""Reliance on protected features: the attribution share of protected words or a region, and the
counterfactual edits (swapped words against a neutral control, a replaced region) with their intervals."""


from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from scipy import stats as stats_test

from auditor.schema.findings import Finding
from auditor.schema.report import Table
from auditor.analyses.trust.counterfactual import (WordSwapper, blur, bootstrap_mean, default_word_pairs, region_mask, wilson,
                                          word_pattern)



from auditor.analyses.trust.base import TrustRunBase
from auditor.subject.inputs import TextInputs
from auditor.analyses.trust.findings import FINDINGS


class ProtectedChecks(TrustRunBase):
    def _protected(self, samples: list[int], inputs: dict[str, torch.Tensor], content: list[torch.Tensor],
                   originals: dict[str, torch.Tensor]) -> dict[str, Any]:
        if not self.subject.head.per_class:
            return {"metrics": {}, "findings": [], "details": {},
                    "summary": "protected features are not checked: the task has no class decision to flip."}
        if self.inputs.is_text:
            return self._protected_words()
        if self.p.region is None or not self.inputs.spatial:
            return {"metrics": {}, "findings": [], "details": {},
                    "summary": "no protected region configured ([analyses.trust] region) for images."}
        return self._protected_region(samples, inputs, originals)

    def _class_name(self, c: int) -> str:
        names = self.subject.class_names
        return names[c] if 0 <= c < len(names) else str(c)

    def _changes(self, indices: list[int], before: torch.Tensor, after: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Per edited sample: the change of its target class's probability, and whether its prediction flipped."""
        target = self.targets[indices]
        change = (after.gather(1, target[:, None]) - before.gather(1, target[:, None])).flatten().double().numpy()
        return change, (after.argmax(1) != before.argmax(1)).numpy()

    def _edit_effects(self, indices: list[int], before: torch.Tensor, after: torch.Tensor,
                      share: Mapping[str, float] | None, control: tuple[np.ndarray, np.ndarray] | None = None
                      ) -> tuple[dict[str, float], list[list[Any]], list[Finding], dict[str, Any]]:
        """Probability change of the target and flips, overall and per class, with intervals; the finding.

        With a `control` (the changes and flips of neutral edits), the edit counts as reliance only where it
        moves predictions more than the control does: flips by Fisher's exact test, |change| by Mann-Whitney,
        one-sided, Bonferroni over the two."""
        p = self.p
        target = self.targets[indices]
        change, flips = self._changes(indices, before, after)
        seed = self.ctx.config.seed
        rows: list[list[Any]] = []
        worst: tuple[str, float, int] | None = None
        groups: list[tuple[str, np.ndarray]] = [("all", np.ones(len(indices), dtype=bool))]
        groups += [(self._class_name(c), (target == c).numpy()) for c in sorted(set(target.tolist()))]
        stats: dict[str, Any] = {}
        for name, sel in groups:
            n = int(sel.sum())
            if n == 0:
                continue
            k = int(flips[sel].sum())
            low, high = wilson(k, n)
            mean = float(change[sel].mean())
            c_low, c_high = bootstrap_mean(change[sel], seed=seed)
            rows.append([name, n, round(share[name], 4) if share is not None and name in share else "",
                         round(k / n, 4), f"[{low:.3f}, {high:.3f}]", round(mean, 4),
                         f"[{c_low:.3f}, {c_high:.3f}]", round(float(np.abs(change[sel]).mean()), 4)])
            stats[name] = {"n": n, "flips": k, "flip_rate": k / n, "mean_change": mean,
                           "mean_abs_change": float(np.abs(change[sel]).mean())}
            # a class counts against the model only where its flips are evidence: the Wilson interval's
            # lower end above the threshold (2 flips of 37 is not)
            if name != "all" and low > p.flip_threshold and (worst is None or k / n > worst[1]):
                worst = (name, k / n, n)
        overall = stats["all"]
        metrics = {"flip_rate": overall["flip_rate"], "probability_change": overall["mean_change"],
                   "probability_change_abs": overall["mean_abs_change"], "edited_samples": float(overall["n"])}
        beyond, excess_p = "", None
        if control is not None:
            row, stats["control"], beyond = _against_control(change, flips, control)
            rows.append(row)
            excess_p = stats["control"]["excess_p"]
            metrics.update({"control_flip_rate": stats["control"]["flip_rate"],
                            "control_probability_change_abs": stats["control"]["mean_abs_change"],
                            "control_edited_samples": float(stats["control"]["n"]), "protected_excess_p": excess_p})
        findings = []
        flagged = overall["flip_rate"] > p.flip_threshold or overall["mean_abs_change"] > p.probability_threshold \
            or worst is not None
        if flagged and (excess_p is None or excess_p < p.alpha):
            where = f"; in class {worst[0]} {worst[1]:.0%} of {worst[2]}" if worst is not None and worst[1] > 0 else ""
            findings.append(FINDINGS.finding(
                "protected_feature",
                message=(f"The model relies on a protected feature: the counterfactual edit flips "
                         f"{overall['flip_rate']:.1%} of {overall['n']} edited predictions{where}, and moves the "
                         f"target's probability by {overall['mean_abs_change']:.3f} on average (thresholds: "
                         f"{p.flip_threshold:.0%} flips, {p.probability_threshold:.2f} probability){beyond}."),
                evidence={"flip_rate": round(overall["flip_rate"], 4), "edited": overall["n"],
                          "mean_abs_change": round(overall["mean_abs_change"], 4),
                          "worst_class": worst[0] if worst else None,
                          **({"control_flip_rate": round(stats["control"]["flip_rate"], 4),
                              "excess_p": round(excess_p, 6)} if excess_p is not None else {})}))
        elif flagged:
            stats["fragile"] = True  # over the thresholds, but no more than neutral edits: not reliance
        return metrics, rows, findings, stats

    def _intact(self, indices: list[int]) -> torch.Tensor:
        """The intact model's class probabilities for audit samples: the shared capture's, no second pass."""
        return torch.softmax(self.ctx.capture.scores[indices].float(), dim=1)

    def _forward_texts(self, texts: list[str]) -> torch.Tensor:
        out = []
        bs = self.ctx.config.batch_size
        with torch.no_grad():
            for start in range(0, len(texts), bs):
                batch = self.subject.adapter.encode_texts(texts[start:start + bs])
                out.append(torch.softmax(self.subject.adapter.forward(self.subject.model, batch).float(), dim=1))
        return torch.cat(out) if out else torch.zeros(0, 0)

    def _protected_words(self) -> dict[str, Any]:
        p = self.p
        pairs = list(p.word_pairs) if p.word_pairs is not None else default_word_pairs()
        swapper = WordSwapper(pairs)
        protected = frozenset(w.lower() for w in (p.protected_words if p.protected_words is not None
                                                  else swapper.words))
        texts = self.subject.data.texts or []
        metrics: dict[str, float] = {}
        findings: list[Finding] = []
        details: dict[str, Any] = {"pairs": len(pairs), "protected_words": len(protected)}
        share = self._word_share(protected, texts)
        edited = [(i, swapper.swap(t)) for i, t in enumerate(texts)]
        edited = [(i, s) for i, s in edited if s != texts[i]]
        parts = []
        table = None
        if edited:
            indices = [i for i, _ in edited]
            before, after = self._intact(indices), self._forward_texts([s for _, s in edited])
            control = self._control_edits(texts)
            m, rows, findings, stats = self._edit_effects(indices, before, after, share, control)
            metrics.update(m)
            details["swaps"] = stats
            details["examples"] = [{"index": i, "text": texts[i], "swapped": s} for i, s in edited[:3]]
            parts.append(f"{len(edited)} samples contained a word of the {len(pairs)} swap pairs; swapped, "
                         f"{stats['all']['flip_rate']:.1%} of their predictions flip")
            if "control" in stats:
                c = stats["control"]
                parts.append(f"neutral swaps (film↔movie, shop↔store...) flip {c['flip_rate']:.1%} of {c['n']} "
                             + ("as a control: the protected edit moves predictions no more than any one-word edit "
                                "does (fragility, not reliance)" if stats.get("fragile") else "as a control"))
            else:
                parts.append("no sample holds a word of the neutral control pairs, so the flips are not compared "
                             "with a control")
            table = _protected_table(
                "Protected words: attribution share and counterfactual swaps", "swapped samples", rows,
                "Words swapped both ways (he↔she, his↔her, names of different groups...). Flip: the predicted class "
                "changes. Δ: probability of the sample's target class after the swap minus before. Share: "
                "|attribution| on the protected words over all words (Integrated Gradients). The control row: "
                "neutral words swapped the same way (film↔movie, shop↔store...), what any one-word edit does.")
        else:
            parts.append(f"no sample contains a word of the {len(pairs)} swap pairs, so there was nothing to swap")
        if share is not None:
            metrics["protected_share"] = share["all"]
            details["share"] = share
            parts.append(f"protected words take {share['all']:.1%} of the attribution in the samples that have them")
        return {"metrics": metrics, "findings": findings, "details": details, "table": table,
                "summary": "; ".join(parts) + "."}

    def _control_edits(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray] | None:
        """The target-probability changes and flips of the neutral control swaps (None: nothing to swap)."""
        pairs = list(self.p.control_pairs) if self.p.control_pairs is not None else \
            default_word_pairs("control_pairs.txt")
        if not pairs:
            return None
        swapper = WordSwapper(pairs)
        edited = [(i, s) for i, t in enumerate(texts) if (s := swapper.swap(t)) != t]
        if not edited:
            return None
        indices = [i for i, _ in edited]
        return self._changes(indices, self._intact(indices), self._forward_texts([s for _, s in edited]))

    def _word_share(self, protected: frozenset[str], texts: Sequence[str]) -> dict[str, float] | None:
        if not protected or not texts:
            return None
        pattern = word_pattern(protected)
        assert pattern is not None
        having = [i for i, t in enumerate(texts) if pattern.search(t)][:self.p.share_samples]
        if not having:
            return None
        method = "integrated_gradients" if "integrated_gradients" in self.methods else next(iter(self.methods))
        text_inputs = self.inputs
        assert isinstance(text_inputs, TextInputs)
        shares: dict[int, list[float]] = defaultdict(list)
        bs = self.ctx.config.batch_size
        for start in range(0, len(having), bs):
            chunk = having[start:start + bs]
            inputs = self.subject.encode_samples(chunk)
            maps = self._explain(method, self.subject.model, inputs, self.targets[chunk]).abs()
            content = self._content(inputs, self.targets[chunk])
            for row, i in enumerate(chunk):
                hits = set()
                for position, (a, b) in enumerate(text_inputs.offsets(texts[i])):
                    if b > a:
                        for match in pattern.finditer(texts[i]):
                            if a < match.end() and b > match.start():
                                hits.add(position)
                where = content[row].tolist()
                total = float(maps[row].flatten()[where].sum())
                if total > 0:
                    shares[int(self.targets[i])].append(
                        float(maps[row].flatten()[[q for q in where if q in hits]].sum()) / total)
        if not shares:
            return None
        out = {self._class_name(c): float(np.mean(v)) for c, v in shares.items()}
        out["all"] = float(np.mean([s for v in shares.values() for s in v]))
        return out

    def _protected_region(self, picked: list[int], inputs: dict[str, torch.Tensor],
                          originals: dict[str, torch.Tensor]) -> dict[str, Any]:
        p = self.p
        assert p.region is not None
        key = self.setup.key
        x0 = inputs[key]
        mask = region_mask(x0.shape, p.region, p.region_size, p.region_box)
        method = "integrated_gradients" if "integrated_gradients" in self.methods else next(iter(self.methods))
        maps = originals[method].abs()
        totals = maps.flatten(1).sum(dim=1)
        share_per = (maps[:, mask].sum(dim=1) / totals.clamp_min(1e-30)).numpy()
        metrics: dict[str, float] = {"protected_share": float(share_per.mean())}
        share: dict[str, float] = {"all": float(share_per.mean())}
        for c in sorted(set(self.targets[picked].tolist())):
            sel = (self.targets[picked] == c).numpy()
            share[self._class_name(c)] = float(share_per[sel].mean())
        after = []
        model = self.subject.model
        with torch.no_grad():
            for batch in self.subject.batches(self.ctx.config.batch_size):
                x = batch.inputs[key]
                fill = blur(x) if p.region_fill == "blur" else self._baseline(x)
                edited = dict(batch.inputs, **{key: torch.where(mask.to(x.device).expand_as(x), fill, x)})
                after.append(torch.softmax(self.subject.adapter.forward(model, edited).float(), dim=1))
        indices = list(range(len(self.subject)))
        m, rows, findings, stats = self._edit_effects(indices, self._intact(indices), torch.cat(after).cpu(), share)
        metrics.update(m)
        where = p.region if p.region != "box" else f"box {list(p.region_box or ())}"
        table = _protected_table(
            f"Protected region ({where}): attribution share and replacement", "edited samples", rows,
            f"The region ({int(mask.sum())} of {mask.numel()} pixels) replaced by "
            f"{'a blurred copy' if p.region_fill == 'blur' else 'the baseline'} in every sample. Share: |Integrated "
            "Gradients| inside the region over the whole map, on the sanity samples.")
        return {"metrics": metrics, "findings": findings, "table": table,
                "details": {"region": where, "pixels": int(mask.sum()), "share": share, "edits": stats},
                "summary": f"replacing the {where} region flips {stats['all']['flip_rate']:.1%} of predictions, and "
                           f"it takes {share['all']:.1%} of the attribution."}




def _protected_table(title: str, counted: str, rows: list[list[Any]], caption: str) -> Table:
    """The protected-feature table (words or a region): one row overall, then one per class."""
    return Table(id="trust.protected", title=title,
                 columns=["class", counted, "attribution share", "flip rate", "95% interval",
                          "mean Δ target probability", "95% interval", "mean |Δ|"], rows=rows,
                 caption=caption + " Intervals: Wilson (flips), bootstrap (Δ).")


def _against_control(change: np.ndarray, flips: np.ndarray, control: tuple[np.ndarray, np.ndarray]
                     ) -> tuple[list[Any], dict[str, Any], str]:
    """The protected edit against neutral edits: the control's table row, its numbers (with `excess_p`: flips by
    Fisher's exact test, |change| by Mann-Whitney, one-sided, Bonferroni over the two) and the finding's clause."""
    c_change, c_flips = control
    n, k, nc, kc = len(flips), int(flips.sum()), len(c_flips), int(c_flips.sum())
    low, high = wilson(kc, nc)
    row = ["control (neutral swaps)", nc, "", round(kc / nc, 4), f"[{low:.3f}, {high:.3f}]",
           round(float(c_change.mean()), 4), "", round(float(np.abs(c_change).mean()), 4)]
    p_flips = float(stats_test.fisher_exact([[k, n - k], [kc, nc - kc]], alternative="greater").pvalue)
    p_change = 1.0 if np.ptp(np.concatenate([np.abs(change), np.abs(c_change)])) == 0 else \
        float(stats_test.mannwhitneyu(np.abs(change), np.abs(c_change), alternative="greater").pvalue)
    excess_p = min(1.0, 2 * min(p_flips, p_change))
    stats = {"n": nc, "flips": kc, "flip_rate": kc / nc, "mean_abs_change": float(np.abs(c_change).mean()),
             "excess_p": excess_p}
    beyond = (f"; neutral one-word swaps (film↔movie, shop↔store...) flip {kc / nc:.1%} of {nc} and move it by "
              f"{float(np.abs(c_change).mean()):.3f}, so the protected edit moves predictions beyond a model's "
              f"fragility to any edit (one-sided tests, p = {excess_p:.2g})")
    return row, stats, beyond
