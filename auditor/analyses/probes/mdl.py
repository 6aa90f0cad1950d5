"""Minimum description length of a property given a representation: the online code (Voita & Titov, 2020,
"Information-Theoretic Probing with Minimum Description Length").

The samples are sent in blocks of doubling size. The first block's labels go with the uniform code
(log2 K bits each); every later block is coded with a probe trained on all the blocks before it, at
-log2 p(label) bits per sample. The total is short where a probe learns the property from few samples,
and close to the uniform code where it can merely fit it given many: accuracy alone does not tell these
apart. Reported as bits per sample and as compression (uniform code / online code; 1 = nothing learned).

The probe is the same closed-form ridge as the accuracy probes (penalty by exact leave-one-out on the
samples sent so far), made probabilistic by a softmax over its scores plus the log of the smoothed class
frequencies, with the smallest temperature whose leave-one-out log-loss on those samples is within one standard
error of the best (0 is allowed: the frequencies alone); mixed with the uniform distribution at 1e-3 so that no label ever costs more than
~10 bits + log2 K. Until 16 samples are sent, blocks are coded with the class frequencies. Any predictor
trained only on earlier blocks gives a valid code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from auditor.analyses.probes.ridge import encode_targets, fit_ridge, spectrum

_UNIFORM_MIX = 1e-3
_TEMPERATURES = np.concatenate([[0.0], np.geomspace(0.01, 100.0, 41)])
"""Multipliers of the scores divided by their leave-one-out spread (0: the class frequencies alone)."""
_MIN_FIT = 16
"""Fewer samples sent so far than this: the next block is coded with the class frequencies."""


@dataclass(frozen=True)
class CodeLength:
    """The online code length of a property's labels given a representation."""

    bits: float
    """Total bits for all samples."""
    samples: int
    classes: int

    @property
    def bits_per_sample(self) -> float:
        return self.bits / self.samples

    @property
    def uniform_bits(self) -> float:
        return self.samples * math.log2(self.classes)

    @property
    def compression(self) -> float:
        """Uniform code length / online code length: 1 means the representation taught the probe nothing."""
        return self.uniform_bits / self.bits if self.bits > 0 else math.inf


def block_ends(n: int, *, first_share: float = 1 / 64) -> list[int]:
    """Ends of the transmitted blocks: n/64, n/32, ..., n/2, n (at least 2 samples in the first)."""
    ends: list[int] = []
    share = first_share
    while share < 1.0:
        end = max(2, int(round(n * share)))
        if end < n and (not ends or end > ends[-1]):
            ends.append(end)
        share *= 2
    return [*ends, n]


def _softmax_scores(scores: np.ndarray) -> np.ndarray:
    """(n, m) ridge scores -> (n, K) logits before the temperature: [-s, s] for two classes."""
    if scores.shape[1] == 1:
        return np.concatenate([-scores, scores], axis=1)
    return scores


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return np.asarray(shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True)))


def _probabilities(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, classes: int) -> np.ndarray:
    """(n_test, K) probabilities from a probe trained on the samples sent so far."""
    n = len(y_train)
    present = np.bincount(y_train, minlength=classes)
    prior = (present + 1.0) / (n + classes)  # Laplace-smoothed class frequencies
    if (present > 0).sum() < 2 or n < _MIN_FIT:  # too few to fit: the frequencies alone
        return np.broadcast_to(prior, (len(x_test), classes)).copy()
    fit = fit_ridge(spectrum(x_train, x_test), y_train[:, None], classes)
    targets = encode_targets(y_train[:, None], classes)[:, :, 0]
    mean = targets.mean(axis=0)
    # Scores without their intercept: a left-out sample's intercept is the mean of the *other* labels, which
    # leans away from its own label (by 1/n); fitted on that, the temperature would learn the leaning.
    loo = fit.loo_scores[:, :, 0] - (n * mean - targets) / (n - 1)
    test = fit.test_scores[:, :, 0] - mean
    scale = float(loo.std()) or 1.0
    loo, test = _softmax_scores(loo / scale), _softmax_scores(test / scale)
    log_prior = np.log(prior)
    losses = np.stack([-_log_softmax(t * loo + log_prior)[np.arange(n), y_train] for t in _TEMPERATURES])
    mean_loss = losses.mean(axis=1)
    best = int(mean_loss.argmin())
    # the smallest temperature within one standard error of the best: a few lucky leave-one-out guesses on a
    # small prefix must not make the next block's code overconfident
    tolerance = float(losses[best].std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    temperature = _TEMPERATURES[int(np.flatnonzero(mean_loss <= mean_loss[best] + tolerance)[0])]
    return np.asarray(np.exp(_log_softmax(temperature * test + log_prior)))


def online_code_length(x: np.ndarray, labels: np.ndarray, classes: int, *, order: np.ndarray) -> CodeLength:
    """The online code length of `labels` given `x`, sending the samples in `order`.

    Args:
        x: (n, d) representation.
        labels: (n,) class indices in 0..classes-1.
        classes: K, the size of the uniform code's alphabet.
        order: a permutation of the samples (seeded, from their content: see `ridge.canonical_order`).
    """
    x, labels = np.asarray(x, dtype=np.float64)[order], labels[order]
    ends = block_ends(len(labels))
    bits = ends[0] * math.log2(classes)
    for start, stop in zip(ends[:-1], ends[1:], strict=True):
        p = _probabilities(x[:start], labels[:start], x[start:stop], classes)
        p = (1.0 - _UNIFORM_MIX) * p + _UNIFORM_MIX / classes
        bits += float(-np.log2(p[np.arange(stop - start), labels[start:stop]]).sum())
    return CodeLength(bits=bits, samples=len(labels), classes=classes)


__all__ = ["CodeLength", "block_ends", "online_code_length"]
