"""The generator judge: what each module of a GAN generator contributes, asked of a discriminator and a
classifier. `analysis.py` declares it and runs the patched passes, `params.py` is its table, `metrics.py`
turns each pass's samples into the judges' numbers with intervals over noise batches, `findings.py` says
what they mean, `report.py` draws the sample grid, the drops and the class shares."""

from auditor.analyses.judge.analysis import Judge
from auditor.analyses.judge.params import JudgeParams

__all__ = ["Judge", "JudgeParams"]
