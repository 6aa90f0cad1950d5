"""The data fingerprint: sha256 of what was audited, after sampling.

It covers every sample's content (text, image file bytes, or array values with dtype and shape) and its
raw label, in order. Two audits with the same fingerprint saw the same samples in the same order, so a
release comparison can pair their predictions; paths, file names and the machine do not enter it.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from auditor.subject.data import AuditData


def data_fingerprint(data: AuditData) -> str:
    """The hex sha256 of the audited samples and their labels."""
    digest = hashlib.sha256()
    digest.update(f"auditor-data-v1:{data.kind}:{len(data)}\n".encode())
    if data.texts is not None:
        for text in data.texts:
            encoded = text.encode("utf-8")
            digest.update(len(encoded).to_bytes(8, "little") + encoded)
    if data.image_paths is not None:
        for path in data.image_paths:
            content = path.read_bytes()
            digest.update(len(content).to_bytes(8, "little") + content)
    if data.arrays is not None:
        arrays = np.ascontiguousarray(data.arrays)
        digest.update(f"{arrays.dtype.str}{arrays.shape}\n".encode())
        digest.update(arrays.tobytes())
    labels = None if data.labels is None else [v if isinstance(v, (int, str)) else str(v) for v in data.labels]
    digest.update(json.dumps(labels, separators=(",", ":")).encode("utf-8"))
    if data.conditions is not None:  # a conditional generator's classes (absent from older fingerprints)
        digest.update(b"conditions:" + np.ascontiguousarray(data.conditions, dtype=np.int64).tobytes())
    return digest.hexdigest()
