"""Ablation of a causal language model: loss increase per layer, attention module, head and MLP."""

from auditor.analyses.lm_ablation.analysis import LMAblation, LMAblationParams, lm_targets

__all__ = ["LMAblation", "LMAblationParams", "lm_targets"]
