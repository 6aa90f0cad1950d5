"""The embedded digits GAN: a small class-conditional generator of 16x16 digits, trained in seconds on
scikit-learn's bundled `load_digits` (the digits CNN's training split), then cached.

An auxiliary-classifier GAN (Odena et al., 2017, "Conditional Image Synthesis with Auxiliary Classifier
GANs"): the generator reads noise and the digit it is asked for; the discriminator's `forward` answers
"how real does this look?" (one logit, what the judge reads) and its `classify` head, used only in
training, names the digit. The judge's second opinion is the independently trained digits CNN.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from auditor.demo.cache import cache_lock

NOISE_DIM = 32
N_CLASSES = 10
VERSION = "digits-gan-v1"
CLASS_WEIGHT = 1.0
MODE_SEEKING = 0.05


class Project(nn.Module):
    """Noise and class embedding -> a 64-channel 4x4 map."""

    def __init__(self, in_features: int, channels: int = 64) -> None:
        super().__init__()
        self.channels = channels
        self.linear = nn.Linear(in_features, channels * 16)
        self.norm = nn.BatchNorm1d(channels * 16)
        self.act = nn.ReLU()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.act(self.norm(self.linear(h)))).view(-1, self.channels, 4, 4)


class UpBlock(nn.Module):
    """Doubles the resolution: transposed convolution, batch norm, ReLU."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)
        self.norm = nn.BatchNorm2d(c_out)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.act(self.norm(self.conv(x))))


class ResBlock(nn.Module):
    """x + conv(ReLU(norm(conv(x)))): a residual refinement at constant resolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm = nn.BatchNorm2d(channels)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + cast(torch.Tensor, self.conv2(self.act(self.norm(self.conv1(x)))))


class ToImage(nn.Module):
    """32 channels at 8x8 -> one grey channel in [0, 1], upsampled to 16x16 as the digits data is."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, 1, 3, padding=1)
        self.act = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = F.interpolate(self.conv(x), size=(16, 16), mode="bilinear", align_corners=False)
        return cast(torch.Tensor, self.act(image))


class DigitsGenerator(nn.Module):
    """(noise (B, 32), digit (B,)) -> (B, 1, 16, 16) images in [0, 1]."""

    noise_dim = NOISE_DIM
    n_classes = N_CLASSES

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(N_CLASSES, 16)
        self.project = Project(NOISE_DIM + 16)
        self.up = UpBlock(64, 32)
        self.blocks = nn.Sequential(ResBlock(32), ResBlock(32))
        self.to_image = ToImage(32)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, self.embed(y)], dim=1)
        return cast(torch.Tensor, self.to_image(self.blocks(self.up(self.project(h)))))


class DigitsDiscriminator(nn.Module):
    """(B, 1, 16, 16) -> (B,) realness logits; `classify` gives the auxiliary digit logits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(16, 32, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Dropout(0.3), nn.Linear(32 * 16, 64), nn.LeakyReLU(0.2),
        )
        self.realness = nn.Linear(64, 1)
        self.classes = nn.Linear(64, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.realness(self.features(x))).squeeze(1)

    def classify(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.realness(h).squeeze(1), self.classes(h)


def build_generator() -> DigitsGenerator:
    """Factory for `[model] path = "auditor.demo.gan:build_generator"` (random init; pass weights)."""
    return DigitsGenerator()


def build_discriminator() -> DigitsDiscriminator:
    """Factory for `[generator.discriminator] path = "auditor.demo.gan:build_discriminator"`."""
    return DigitsDiscriminator()


def train(seed: int = 0, steps: int = 1000, batch: int = 64) -> tuple[DigitsGenerator, DigitsDiscriminator, float]:
    """Trains the GAN with a fixed seed on the digits CNN's training split; returns it and the seconds taken."""
    from auditor.demo.digits import digits_arrays

    started = time.perf_counter()
    torch.manual_seed(seed)
    x_tr, y_tr = digits_arrays(seed)[:2]
    xs, ys = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    gen, disc = DigitsGenerator(), DigitsDiscriminator()
    opt_g = torch.optim.Adam(gen.parameters(), lr=2e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=1e-3, betas=(0.5, 0.999))
    rng = torch.Generator().manual_seed(seed)
    gen.train()
    disc.train()
    for _ in range(steps):
        idx = torch.randint(len(xs), (batch,), generator=rng)
        real, labels = xs[idx], ys[idx]
        z = torch.randn(batch, NOISE_DIM, generator=rng)
        asked = torch.randint(N_CLASSES, (batch // 2,), generator=rng).repeat(2)  # pairs: one digit, two noises
        fake = gen(z, asked)
        opt_d.zero_grad()
        real_logit, real_classes = disc.classify(real)
        fake_logit, fake_classes = disc.classify(fake.detach())
        loss_d = (F.binary_cross_entropy_with_logits(real_logit, torch.full_like(real_logit, 0.9))
                  + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit))
                  + F.cross_entropy(real_classes, labels) + F.cross_entropy(fake_classes, asked))
        loss_d.backward()  # type: ignore[no-untyped-call]  # untyped in torch
        opt_d.step()
        opt_g.zero_grad()
        logit, classes = disc.classify(fake)
        half = batch // 2
        # Mode seeking (Mao et al., 2019): two noises for one digit must give two different images.
        spread = (fake[:half] - fake[half:]).abs().mean() / (z[:half] - z[half:]).abs().mean()
        loss_g = (F.binary_cross_entropy_with_logits(logit, torch.ones_like(logit))
                  + CLASS_WEIGHT * F.cross_entropy(classes, asked) + MODE_SEEKING / (spread + 1e-5))
        loss_g.backward()
        opt_g.step()
    gen.eval()
    disc.eval()
    return gen, disc, time.perf_counter() - started


def prepare(cache_dir: Path, *, seed: int = 0) -> dict[str, str | float]:
    """Trains once and caches both networks (safetensors); returns their paths."""
    from safetensors.torch import save_file

    folder = cache_dir / f"{VERSION}-seed{seed}"
    g_file, d_file, info_file = folder / "generator.safetensors", folder / "discriminator.safetensors", \
        folder / "info.json"
    with cache_lock(folder):
        if not (g_file.is_file() and d_file.is_file() and info_file.is_file()):
            gen, disc, seconds = train(seed)
            folder.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in gen.state_dict().items()}, str(g_file))
            save_file({k: v.contiguous() for k, v in disc.state_dict().items()}, str(d_file))
            info_file.write_text(json.dumps({"train_seconds": round(seconds, 1), "seed": seed,
                                             "train_samples": int(len(_train_labels(seed)))}))
        info = json.loads(info_file.read_text())
    return {"generator": str(g_file), "discriminator": str(d_file), "train_seconds": info["train_seconds"],
            "train_samples": info["train_samples"]}


def _train_labels(seed: int) -> np.ndarray:
    from auditor.demo.digits import digits_arrays

    return digits_arrays(seed)[1]
