"""Activation maximization for images: an input optimized to excite one unit, made readable.

Written here, after the recipe of Olah et al., 2017, "Feature Visualization" (Distill) and its Lucid /
Lucent code, read for reference:
- the image is parameterized in the Fourier domain, its spectrum scaled by 1/frequency so that gradient
  steps do not favour high frequencies (Lucid's `fft_image`);
- its colours are decorrelated: the optimized channels are mixed by the square root of the channel
  covariance, measured here on the audit data (Lucid uses ImageNet's fixed matrix);
- a sigmoid keeps every pixel inside the model's valid range, per channel;
- each step sees the image randomly jittered, scaled and rotated (transformation robustness), and
  penalties on total variation and on the distance from mid-range keep it smooth and bounded.
Inputs that are not images (arrays) get the sigmoid range only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from auditor.analyses.features.units import tuned_threads


@dataclass(frozen=True)
class InputRange:
    """Per channel, the smallest and largest valid input value, and the colour decorrelation matrix."""

    low: torch.Tensor
    """(channels,), or (features,) for arrays."""
    high: torch.Tensor
    colour: torch.Tensor
    """(channels, channels): the square root of the channel covariance, scaled to a largest column norm of 1."""

    @classmethod
    def from_samples(cls, x: torch.Tensor) -> InputRange:
        """From audit inputs (samples, channels, ...): channel minima and maxima, channel covariance."""
        channels = x.shape[1]
        flat = x.detach().double().movedim(1, -1).reshape(-1, channels)
        low, high = flat.min(dim=0).values, flat.max(dim=0).values
        high = torch.where(high > low, high, low + 1.0)
        colour = torch.eye(channels, dtype=torch.float64)
        if x.dim() == 4 and channels > 1:
            cov = torch.cov(((flat - low) / (high - low)).t())
            values, vectors = torch.linalg.eigh(cov)
            colour = vectors @ torch.diag(values.clamp_min(1e-8).sqrt())
            colour = colour / colour.norm(dim=0).max().clamp_min(1e-8)
        return cls(low=low.float(), high=high.float(), colour=colour.float())

    @classmethod
    def from_normalization(cls, mean: list[float], std: list[float], *, rescaled_max: float = 1.0) -> InputRange:
        """From an image processor's normalization: pixels in [0, rescaled_max] after (x - mean) / std."""
        m, s = torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
        return cls(low=(0.0 - m) / s, high=(rescaled_max - m) / s, colour=torch.eye(len(mean)))


def fourier_scale(height: int, width: int, *, decay: float = 1.0) -> torch.Tensor:
    """(height, width // 2 + 1): 1 / frequency ** decay, the spectrum's scale (Lucid's `fft_image`)."""
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    freqs = torch.sqrt(fx * fx + fy * fy)
    return 1.0 / freqs.clamp_min(1.0 / max(height, width)) ** decay


class ImageParam:
    """A batch of images as Fourier spectra (or raw values for arrays), mapped into the valid range."""

    def __init__(self, n: int, shape: tuple[int, ...], rng: InputRange, *, decorrelate: bool = True,
                 generator: torch.Generator | None = None) -> None:
        self.shape, self.rng = shape, rng
        self.fourier = len(shape) == 3 and min(shape[1:]) >= 4
        if self.fourier:
            c, h, w = shape
            self.scale = fourier_scale(h, w)
            self.spectrum = (0.01 * torch.randn(n, c, h, w // 2 + 1, 2, generator=generator)).requires_grad_()
            self.colour = rng.colour if decorrelate else torch.eye(c)
        else:
            self.spectrum = (0.01 * torch.randn(n, *shape, generator=generator)).requires_grad_()

    def images(self) -> torch.Tensor:
        """(n, *shape) inside the valid range."""
        if self.fourier:
            c, h, w = self.shape
            spectrum = torch.view_as_complex(self.spectrum) * self.scale
            raw = torch.fft.irfft2(spectrum, s=(h, w), norm="ortho") / 4.0  # Lucid's constant: a unit-scale start
            raw = torch.einsum("nchw,dc->ndhw", raw, self.colour)
            low, high = self.rng.low.view(1, -1, 1, 1), self.rng.high.view(1, -1, 1, 1)
        else:
            raw = self.spectrum
            view = (1, -1, *([1] * (raw.dim() - 2)))
            low, high = self.rng.low.view(view), self.rng.high.view(view)
        return low + (high - low) * torch.sigmoid(raw)


def random_affine(x: torch.Tensor, *, generator: torch.Generator, jitter: float, scale: float,
                  degrees: float) -> torch.Tensor:
    """Each image jittered by up to `jitter` of its size, scaled by 1 ± `scale`, rotated by ± `degrees`."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(degrees)
    s = 1 + (torch.rand(n, generator=generator) * 2 - 1) * scale
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * 2 * jitter  # affine_grid spans [-1, 1]
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], dim=1),
                         torch.stack([sin, cos, shift[:, 1]], dim=1)], dim=1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """(n,) mean absolute difference between neighbouring pixels."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(dim=1) + \
        (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(dim=1)


@dataclass(frozen=True)
class OptimSettings:
    steps: int = 128
    learning_rate: float = 0.05
    transforms: bool = True
    decorrelate: bool = True
    tv_weight: float = 0.5
    l2_weight: float = 0.02
    seed: int = 0


def maximize(objective: Callable[[torch.Tensor], torch.Tensor], n: int, shape: tuple[int, ...], rng: InputRange,
             *, scale: torch.Tensor, settings: OptimSettings) -> torch.Tensor:
    """Optimizes n inputs of `shape`, input i to maximize `objective(x)[i]`; returns them (n, *shape).

    `scale` (n,): each objective is divided by it (the largest activation a real sample gave), so the
    penalties weigh the same for a unit that reaches 0.1 and one that reaches 100. Only the inputs get
    gradients (`torch.autograd.grad`): no parameter of the model is written.
    """
    generator = torch.Generator().manual_seed(settings.seed)
    param = ImageParam(n, shape, rng, decorrelate=settings.decorrelate, generator=generator)
    optimizer = torch.optim.Adam([param.spectrum], lr=settings.learning_rate)
    span = (rng.high - rng.low).view(1, -1, *([1] * (len(shape) - 1)))
    low = rng.low.view(1, -1, *([1] * (len(shape) - 1)))
    images = param.fourier and len(shape) == 3
    denominator = scale.abs().clamp_min(1e-6)
    with tuned_threads() as tick:
        for _ in range(settings.steps):
            tick()
            with torch.enable_grad():
                x = param.images()
                seen = random_affine(x, generator=generator, jitter=0.06, scale=0.1, degrees=10.0) \
                    if images and settings.transforms else x
                unit = (x - low) / span  # in [0, 1] per channel
                loss = -(objective(seen) / denominator).sum()
                if images:
                    loss = loss + settings.tv_weight * total_variation(unit).sum()
                loss = loss + settings.l2_weight * ((unit - 0.5) ** 2).flatten(1).mean(dim=1).sum()
                (grad,) = torch.autograd.grad(loss, [param.spectrum])
            param.spectrum.grad = grad
            optimizer.step()
            param.spectrum.grad = None
    with torch.no_grad():
        return param.images().detach()
