"""Weight health without data: the spectrum of every layer (Martin & Mahoney, 2021). `spectra.py` reads the
weight matrices and fits them (with `fit.py`: the power-law tail, Marchenko–Pastur spikes, ranks),
`analysis.py` declares the analysis and says what the fits mean, `report.py` draws and tabulates them."""

from auditor.analyses.weights.analysis import Weights
from auditor.analyses.weights.spectra import LayerSpectrum, WeightsParams, layer_spectra, weight_matrices

__all__ = ["LayerSpectrum", "Weights", "WeightsParams", "layer_spectra", "weight_matrices"]
