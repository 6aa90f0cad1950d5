"""Linear probes: which block a linear classifier reads each property from, with permutation,
random-network and MDL baselines (`analysis.py`). Beside it: closed-form ridge probes with exact
leave-one-out (`ridge.py`), the online code length (`mdl.py`), the probe sets (`sets.py`, the built-in
sentiment sentences in `sentiment_set.py` and `data/`), the network's re-initialization (`random_init.py`),
the results (`results.py`) and the section's figures (`figures.py`).
"""

from auditor.analyses.probes.analysis import Probes, ProbesParams, head_block, probe_needs

__all__ = ["Probes", "ProbesParams", "head_block", "probe_needs"]
