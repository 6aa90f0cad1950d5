"""Feature visualization: top examples by activation and relevance, activation maximization, token search,
feature maps and attention heads. `analysis.py` declares it, `run.py` does the work, `report.py` writes its
table and findings; the helpers: image optimization (`optim`), token search (`tokens`), attention
statistics (`attention`), reading units from module outputs (`units`) and the gallery figures (`gallery`)."""

from auditor.analyses.features.analysis import Features
from auditor.analyses.features.params import FeaturesParams

__all__ = ["Features", "FeaturesParams"]
