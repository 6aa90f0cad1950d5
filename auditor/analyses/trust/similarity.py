"""How alike two attribution maps are: rank correlation (signed or absolute) and SSIM.

SSIM is written here (about twenty lines: a Gaussian-windowed mean, variance and covariance, as in Wang et
al., 2004) rather than adding scikit-image or torchmetrics for one function. Maps are normalized to [0, 1]
by their largest absolute value first, as Adebayo et al. (2018) do for the absolute maps they compare.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import rankdata


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's correlation of two maps' values (ties share their mean rank); 0 when either is constant."""
    x = rankdata(a.detach().double().flatten().cpu().numpy())
    y = rankdata(b.detach().double().flatten().cpu().numpy())
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean structural similarity of two 2-D maps scaled to [0, 1] (a 7×7 Gaussian window, σ = 1.5,
    shrunk to fit small maps); 1 for identical maps."""
    a, b = a.detach().double(), b.detach().double()
    a = a / a.abs().max() if a.abs().max() > 0 else a
    b = b / b.abs().max() if b.abs().max() > 0 else b
    size = min(7, a.shape[-2], a.shape[-1])
    size = size if size % 2 else size - 1
    window = _gaussian_window(max(size, 1), 1.5 * max(size, 1) / 7)
    x, y = a[None, None], b[None, None]

    def conv(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(t, window)
    mu_x, mu_y = conv(x), conv(y)
    var_x = conv(x * x) - mu_x**2
    var_y = conv(y * y) - mu_y**2
    cov = conv(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    value = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(value.mean())
