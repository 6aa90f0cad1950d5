"""Per-sample integers (predicted class, label) stored compactly in audit.json: one string of
space-separated numbers instead of a JSON list, which `indent=2` would spread over one line per sample.

The performance section keeps its predictions and labels this way, so that a later audit on the same
data can be compared with it sample by sample (McNemar's test, `auditor.policy.pairing`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def encode_ints(values: Iterable[int]) -> str:
    """`[3, 1, -1]` -> `"3 1 -1"`."""
    return " ".join(str(int(v)) for v in values)


def decode_ints(text: str) -> np.ndarray:
    """`"3 1 -1"` -> `array([3, 1, -1])`; raises ValueError on anything but integers."""
    return np.array([int(part) for part in text.split()], dtype=np.int64)
