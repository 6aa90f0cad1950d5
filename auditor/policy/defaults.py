"""The commented policy `auditor policy init` writes: the defaults, and one example of every kind of rule.

Rules on analyses that may not run (performance needs labels; a bare encoder has none) are optional, so
the file works unchanged on any audit.
"""

from __future__ import annotations

DEFAULT_POLICY_TOML = '''\
# auditor release policy: what `auditor check` judges an audit by.
#
#   auditor check audit/ --policy policy.toml [--baseline last-release/audit.json] [--junit junit.xml]
#                        [--markdown summary.md]
#   auditor run --config audit.toml --policy policy.toml --baseline last-release/audit.json
#
# Exit codes: 0 passed, 1 the policy failed, 2 bad input (a malformed policy, an unknown key, a rule on a
# metric the audit does not have and that is not `optional = true`).
#
# Two rules are built in:
#   - every analysis completed: an analysis that raised (`<id>.analysis_failed`) fails the check;
#   - no unwaived finding at or above `fail_on_severity` ("fail", "warn", "info", or "none" to turn it off).
# Warnings never fail the check unless a rule below says so.
fail_on_severity = "fail"

# Significance level of the tests that decide whether a drop against the baseline is real: McNemar's test
# when both audits ran on the same samples (same data fingerprint), Fisher's exact test when they did not.
alpha = 0.05

# One [[rule]] table per rule. A rule is about exactly one of:
#   findings = [...]        finding ids or glob patterns ("inventory.*"), with a severity floor
#   metric = "..."          a report metric: "<analysis>.<name>", e.g. "performance.accuracy"
#   module_metric = "..."   a per-module metric: "<analysis>.<key>", e.g. "inventory.dead_fraction",
#                           checked on every module whose name matches `modules` (a glob, default "*")
# Thresholds: min, max; against the baseline: max_drop, max_rise, max_class_drop (performance.accuracy
# only), min_rank_correlation (module_metric only), fail_on_new (findings only).
# Every rule may also set: name = "...", critical = false (a breach warns instead of failing),
# optional = true (skip the rule, and say so, when the audit does not have its metric).

[[rule]]
name = "accuracy well above chance"
metric = "performance.accuracy"
min = 0.5
optional = true            # performance runs only on labelled data

[[rule]]
name = "accuracy does not regress"
metric = "performance.accuracy"
max_drop = 0.01            # one point, and only when the drop is significant at `alpha`
optional = true

[[rule]]
name = "no class regresses"
metric = "performance.accuracy"
max_class_drop = 0.05      # five points of any one class's accuracy (its recall), Holm-corrected
optional = true

[[rule]]
name = "calibration does not degrade"
metric = "performance.ece"
max_rise = 0.05
critical = false           # warns only
optional = true

[[rule]]
name = "no new warnings"
findings = ["*"]
severity = "warn"
fail_on_new = true         # only findings (id and module) the baseline did not have
critical = false

[[rule]]
name = "dead units stay rare"
module_metric = "inventory.dead_fraction"
modules = "*"
max = 0.5
critical = false
optional = true            # inventory can be skipped (--skip inventory)

[[rule]]
name = "activation scales keep their order across modules"
module_metric = "inventory.output_std"
min_rank_correlation = 0.8
critical = false
optional = true

[[rule]]
name = "the same modules carry the decision"
module_metric = "gradients.abs_grad_x_act"
min_rank_correlation = 0.5   # Spearman over the modules both releases share
critical = false
optional = true            # gradients need a head (not a bare encoder)

[[rule]]
name = "gradients neither vanish nor explode"
findings = ["gradients.vanishing", "gradients.exploding"]
severity = "warn"
critical = false

[[rule]]
name = "attributions converge"
metric = "attribution.ig_relative_delta"
max = 0.05                 # IG's median convergence delta, as a share of |F(x) - F(baseline)|
critical = false
optional = true            # attributions need a head (not a bare encoder)

[[rule]]
name = "the audit labels stay linearly decodable"
findings = ["probes.no_signal", "probes.lost_in_head"]
severity = "warn"          # the audit data's own labels; the built-in probe sets only inform
critical = false

[[rule]]
name = "explanations pass their sanity and faithfulness checks"
findings = ["trust.sanity_failed", "trust.unfaithful"]
severity = "warn"
critical = false           # they judge the explainer, not the model

[[rule]]
name = "no reliance on protected features"
findings = ["trust.protected_feature"]
severity = "warn"
critical = false           # set true to fail a release whose predictions flip when he/she or names are swapped

[[rule]]
name = "the same modules matter when removed"
module_metric = "ablation.ablation_drop"
min_rank_correlation = 0.5   # Spearman of the accuracy drops over the modules both releases ablated
critical = false
optional = true            # ablation drops need a head (a bare encoder has its embedding change instead)

[[rule]]
name = "no new module carries one class alone"
findings = ["ablation.class_specific", "ablation.critical_module"]
severity = "info"
fail_on_new = true         # only modules (and heads, units) the baseline did not name
critical = false

[[rule]]
name = "generated samples stay recognizable"
metric = "judge.intact_confidence"
max_drop = 0.05            # the classifier judge's mean confidence, against the last release's generator
critical = false
optional = true            # generators only, and only with a classifier judge

[[rule]]
name = "no new generator module draws one class alone"
findings = ["judge.class_specific"]
severity = "info"
fail_on_new = true
critical = false

# A waiver accepts one finding (by id, optionally on one module) until its expiry date, with a reason.
# From the day after `expires` it no longer waives, and the verdict says so. Where one module has several
# findings with the same id (a probe's peak for two properties), `key` picks one: the key `auditor check`
# shows, e.g. key = "probes.peak_layer on features.relu1 [property=orientation]".
#
# [[waiver]]
# finding = "inventory.dead_units"
# module = "features.relu3"
# reason = "dead channels after the last conv; ablating them changes no prediction (ticket ML-123)"
# expires = 2026-06-30
'''
