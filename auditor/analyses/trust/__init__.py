"""Can the explanations be trusted? The sanity cascade, deletion with its power, and protected features.

`analysis.py` declares the analysis, `params.py` its table; a run (`run.py`) builds on the shared set-up
(`base.py`) and the protected-feature checks (`protected.py`); the deletion test with its references is
`deletion.py`. The pieces: explainers that run on any copy of the model (`explainers`), map similarity
(`similarity`), cascading re-initialization (`randomize`), the cascade's steps as the executor's items (`steps`),
deletion/insertion curves (`faithfulness`),
ROAD's imputation (`imputation`) and counterfactual edits (`counterfactual`, with the word lists)."""

from auditor.analyses.trust.analysis import Trust
from auditor.analyses.trust.params import TrustParams

__all__ = ["Trust", "TrustParams"]
