"""Ablation of a causal language model: loss increase per layer, attention module, head, MLP and MLP neuron."""

from auditor.analyses.lm_ablation.analysis import LMAblation
from auditor.analyses.lm_ablation.params import LMAblationParams
from auditor.analyses.lm_ablation.targets import lm_targets

__all__ = ["LMAblation", "LMAblationParams", "lm_targets"]
