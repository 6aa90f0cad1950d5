"""The embedded digits CNN: trained in seconds on scikit-learn's bundled `load_digits`, then cached.

The 8x8 digit images are upsampled to 16x16 (bilinear) so the conv blocks have maps worth looking at.
Training is seeded and runs once; later calls read the cached safetensors file.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from auditor.demo.cache import cache_lock

CLASS_NAMES = [str(d) for d in range(10)]
VERSION = "digits-cnn-v1"


class DigitsCNN(nn.Module):
    """Three conv blocks (conv, batch norm, in-place ReLU, pooling) and a linear head; 16x16 grey input."""

    class_names = CLASS_NAMES

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(1, 16, 3, padding=1)), ("bn1", nn.BatchNorm2d(16)),
            ("relu1", nn.ReLU(inplace=True)), ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(16, 32, 3, padding=1)), ("bn2", nn.BatchNorm2d(32)),
            ("relu2", nn.ReLU(inplace=True)), ("pool2", nn.MaxPool2d(2)),
            ("conv3", nn.Conv2d(32, 64, 3, padding=1)), ("relu3", nn.ReLU(inplace=True)),
            ("gap", nn.AdaptiveAvgPool2d(1)),
        ]))
        self.classifier = nn.Sequential(OrderedDict([
            ("flatten", nn.Flatten()), ("dropout", nn.Dropout(0.2)), ("fc", nn.Linear(64, 10)),
        ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.classifier(self.features(x)))


def build_model() -> DigitsCNN:
    """Factory for `auditor run --model auditor.demo.digits:build_model` (random init; pass --weights)."""
    return DigitsCNN()


def digits_arrays(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_heldout, y_heldout): 16x16 float images in [0, 1], stratified 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    x = F.interpolate(images, size=(16, 16), mode="bilinear", align_corners=False).clamp(0, 1).numpy()
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    return x_tr, y_tr, x_te, y_te


def training_set(seed: int = 0, *, degrade: tuple[int, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) to train on; `degrade=(digit, keep)` leaves only `keep` of that digit's images (drawn with
    `seed`, at least one): the demo's second release, degraded on purpose."""
    x, y = digits_arrays(seed)[:2]
    if degrade is None:
        return x, y
    own = np.flatnonzero(y == degrade[0])
    kept = np.random.default_rng(seed).choice(own, size=max(1, round(degrade[1] * len(own))), replace=False)
    mask = y != degrade[0]
    mask[kept] = True
    return x[mask], y[mask]


def train(seed: int = 0, epochs: int = 15, *, degrade: tuple[int, float] | None = None
          ) -> tuple[DigitsCNN, float, np.ndarray, np.ndarray]:
    """Trains the CNN with a fixed seed; returns it with its held-out accuracy and the held-out set.

    `degrade=(digit, keep)` trains on only `keep` of that digit's images (the demo's degraded release);
    the held-out set is the same either way, so the two releases' audits pair sample by sample.
    """
    torch.manual_seed(seed)
    x_te, y_te = digits_arrays(seed)[2:]
    x_tr, y_tr = training_set(seed, degrade=degrade)
    model = DigitsCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    xs, ys = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(xs), generator=generator)
        for idx in order.split(64):  # type: ignore[no-untyped-call]  # Tensor.split is untyped in torch
            optimizer.zero_grad()
            F.cross_entropy(model(xs[idx]), ys[idx]).backward()  # type: ignore[no-untyped-call]  # untyped in torch
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(torch.from_numpy(x_te)).argmax(1).numpy() == y_te).mean())
    return model, accuracy, x_te, y_te


def prepare(cache_dir: Path, *, seed: int = 0, degrade: tuple[int, float] | None = None) -> dict[str, str | float]:
    """Trains once and caches weights (safetensors) and the held-out set (.npz); returns their paths."""
    from safetensors.torch import save_file

    variant = "" if degrade is None else f"-digit{degrade[0]}-keep{degrade[1]:g}"
    folder = cache_dir / f"{VERSION}-seed{seed}{variant}"
    weights, heldout, info_file = folder / "model.safetensors", folder / "heldout.npz", folder / "info.json"
    with cache_lock(folder):
        if not (weights.is_file() and heldout.is_file() and info_file.is_file()):
            model, accuracy, x_te, y_te = train(seed, degrade=degrade)
            folder.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
            np.savez(heldout, x=x_te, y=y_te)
            info_file.write_text(json.dumps({"heldout_accuracy": accuracy, "heldout_samples": int(len(y_te)),
                                             "train_samples": len(training_set(seed, degrade=degrade)[1]),
                                             "seed": seed}))
        info = json.loads(info_file.read_text())
    return {"weights": str(weights), "data": str(heldout), "heldout_accuracy": info["heldout_accuracy"],
            "train_samples": info["train_samples"], "heldout_samples": info["heldout_samples"]}
