"""Attention heads of a causal language model, by their signature on repeated random tokens."""

from auditor.analyses.heads.analysis import AttentionHeads, HeadsParams

__all__ = ["AttentionHeads", "HeadsParams"]
