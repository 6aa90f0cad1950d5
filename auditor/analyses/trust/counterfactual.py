"""Counterfactual edits: swap protected words (he↔she, names of different groups) or replace an image
region, and measure how much the prediction moves. Attention to a feature is not reliance on it; a
prediction that changes when only that feature changes is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from importlib import resources

import numpy as np
import torch


def default_word_pairs(name: str = "word_pairs.txt") -> list[tuple[str, str]]:
    """English word pairs that ship with the package: the protected ones (auditor/analyses/trust/word_pairs.txt), or
    the neutral control (`control_pairs.txt`)."""
    text = resources.files("auditor.analyses.trust").joinpath(name).read_text(encoding="utf-8")
    pairs = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) == 2:
            pairs.append((words[0], words[1]))
    return pairs


def word_pattern(words: Iterable[str]) -> re.Pattern[str] | None:
    """Any of `words` as a whole word, any case, longest first (None for no words)."""
    ordered = sorted({w.lower() for w in words}, key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(re.escape(w) for w in ordered) + r")\b", re.IGNORECASE) if ordered else None


class WordSwapper:
    """Replaces each listed word by its partner, both ways, whole words only, keeping capitalization.

    A word in two pairs swaps as its first pair says ("her" -> "his", from "his her" before "him her").
    """

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        mapping: dict[str, str] = {}
        for a, b in pairs:
            mapping.setdefault(a.lower(), b.lower())
            mapping.setdefault(b.lower(), a.lower())
        self.mapping = mapping
        self.pattern = word_pattern(mapping)

    @property
    def words(self) -> frozenset[str]:
        return frozenset(self.mapping)

    def swap(self, text: str) -> str:
        if self.pattern is None:
            return text

        def replace(match: re.Match[str]) -> str:
            word = match.group(0)
            other = self.mapping[word.lower()]
            if word.isupper() and len(word) > 1:
                return other.upper()
            if word[0].isupper():
                return other[0].upper() + other[1:]
            return other
        return self.pattern.sub(replace, text)


def region_mask(shape: Sequence[int], region: str, size: float,
                box: tuple[int, int, int, int] | None) -> torch.Tensor:
    """(H, W) bool mask of the region: `border` (a frame `size` of the side wide), `corners` (four squares of
    that side), `center`, or `box` (top, left, height, width in input pixels)."""
    h, w = int(shape[-2]), int(shape[-1])
    mask = torch.zeros(h, w, dtype=torch.bool)
    if region == "box":
        assert box is not None
        top, left, height, width = box
        mask[top:top + height, left:left + width] = True
        return mask
    k = max(1, round(size * min(h, w)))
    if region == "border":
        mask[:k, :] = mask[-k:, :] = True
        mask[:, :k] = mask[:, -k:] = True
    elif region == "corners":
        for rows in (slice(0, k), slice(h - k, h)):
            for cols in (slice(0, k), slice(w - k, w)):
                mask[rows, cols] = True
    elif region == "center":
        top, left = (h - k) // 2, (w - k) // 2
        mask[top:top + k, left:left + k] = True
    else:
        raise ValueError(f"unknown region {region!r}")
    return mask


def blur(x: torch.Tensor) -> torch.Tensor:
    """A box blur a quarter of the image's side wide (odd), edges averaged over what lies inside."""
    k = max(3, (min(x.shape[-2:]) // 4) | 1)
    return torch.nn.functional.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=False)


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion (95% by default)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_mean(values: np.ndarray, *, seed: int, resamples: int = 2000) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of a mean."""
    if len(values) == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))
