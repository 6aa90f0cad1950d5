"""What the probes analysis stands on: closed-form ridge probes with exact leave-one-out, the online code
length (MDL), the probe sets (audit labels, the built-in sentiment sentences, gratings, user files), the
random re-initialization of a network, and the section's figures.

Kept apart from `auditor.analyses.probes`, which only wires these to the capture and writes the section.
"""
