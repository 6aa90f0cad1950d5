"""Input attributions (Captum): Integrated Gradients, saliency and the rest for images and arrays
(`image.py`, with Grad-CAM), Layer Integrated Gradients over the embeddings for text (`text.py`); what
both share (`common.py`); Integrated Gradients' chunks of samples as the executor's items (`chunks.py`);
the analysis (`analysis.py`) and its table (`params.py`)."""

from auditor.analyses.attribution.analysis import Attribution
from auditor.analyses.attribution.common import shown_samples
from auditor.analyses.attribution.image import token_gradcam
from auditor.analyses.attribution.params import AttributionParams

__all__ = ["Attribution", "AttributionParams", "shown_samples", "token_gradcam"]
