"""The embedded tiny language model: a 2-layer GPT-2 trained here on text made for it (4,500 steps on one
thread, about two minutes), then cached like the digits CNN.

The text: made-up words (two syllables each, a vocabulary of 100). Nine sequences in ten walk through a random
run of 5-16 words, going on to the next word of the run but jumping to a random word of it 30% of the time, so
that only the current word's earlier successor predicts the next one: what an induction head does (Olsson et
al., 2022): attend to the token after an earlier copy of the current token, and copy it. The jumps matter: on
purely periodic runs the model copies with fixed offsets, or with a head that attends two after the earlier copy
of the previous word. One sequence in ten is skip-bigram text (a word fixed by the word two before it), which
makes a layer-0 previous-token head form early; the layer-1 induction head then reads it.
The audit data: 64 texts of 10 random words said twice, so the first half is unpredictable and the second
half is not.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from auditor.demo.cache import cache_lock

VERSION = "tiny-lm-v2"
WORDS = 100
SPECIAL = ("<bos>", "<pad>", "<unk>")
CONTEXT = 40
"""Tokens per training sequence (with <bos>)."""
STEPS = 4500
JUMP = 0.3
"""How often a training walk jumps to a random word of its run instead of going on to the next one."""
SKIP = 0.1
"""The share of skip-bigram sequences in a training batch."""
_SKIP_PERMUTATION = np.random.default_rng(5).permutation(WORDS)
BATCH = 32
AUDIT_TEXTS = 64
AUDIT_HALF = 10
PROBE_TEXTS = 64


def vocabulary() -> list[str]:
    """The 100 made-up words, in a fixed order: consonant-vowel-consonant-vowel, drawn without repeats."""
    consonants, vowels = "bdfgklmnprstvz", "aeiou"
    syllables = [c + v for c in consonants for v in vowels]
    rng = np.random.default_rng(2022)
    pairs = rng.choice(len(syllables) ** 2, size=WORDS, replace=False)
    return [syllables[p // len(syllables)] + syllables[p % len(syllables)] for p in pairs.tolist()]


def tokenizer() -> Any:
    """A word-level tokenizer over the vocabulary; every text starts with <bos>."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate((*SPECIAL, *vocabulary()))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 0)])
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]  # unannotated in transformers
        tokenizer_object=core, bos_token="<bos>", pad_token="<pad>", unk_token="<unk>")


def training_batch(rng: np.random.Generator, n: int) -> torch.Tensor:
    """(n, CONTEXT) token ids, <bos> first. A share SKIP of the sequences are skip-bigram text: random words where,
    with probability 0.7, a word is fixed by the word two before it (a fixed permutation), which rewards a
    previous-token head in layer 0. The rest are walks through a run of 5-16 distinct random words that go on to
    the next word of the run (cyclically) except with probability JUMP, where they jump to a random word of the
    run: only the current word's earlier successor predicts the next word (no fixed offset, nor the word two after
    an earlier copy of the previous word, does as well), which rewards an induction head reading that
    previous-token head."""
    ids = np.zeros((n, CONTEXT), dtype=np.int64)
    special = len(SPECIAL)
    for i in range(n):
        if rng.random() < SKIP:
            row = rng.integers(0, WORDS, size=CONTEXT - 1) + special
            for q in range(2, CONTEXT - 1):
                if rng.random() < 0.7:
                    row[q] = _SKIP_PERMUTATION[row[q - 2] - special] + special
            ids[i, 1:] = row
            continue
        period = int(rng.integers(5, 17))
        run = rng.choice(WORDS, size=period, replace=False) + special
        k = int(rng.integers(0, period))
        for q in range(1, CONTEXT):
            ids[i, q] = run[k]
            k = int(rng.integers(0, period)) if rng.random() < JUMP else (k + 1) % period
    return torch.from_numpy(ids)


def audit_texts(seed: int) -> list[str]:
    """The audit data: AUDIT_TEXTS texts of AUDIT_HALF distinct random words, said twice."""
    words = vocabulary()
    rng = np.random.default_rng(seed + 1000)
    texts = []
    for _ in range(AUDIT_TEXTS):
        half = " ".join(words[w] for w in rng.choice(WORDS, size=AUDIT_HALF, replace=False))
        texts.append(f"{half} {half}")
    return texts


def probe_rows(seed: int) -> list[tuple[str, str]]:
    """The demo's probe set: PROBE_TEXTS texts, every other one AUDIT_HALF distinct random words said twice, the
    others 2 * AUDIT_HALF distinct words said once, labelled `repeated` yes / no. Both have the same length and
    no word twice in a half, so only a model that looks back (the induction head) can tell them apart."""
    words = vocabulary()
    rng = np.random.default_rng(seed + 2000)
    rows = []
    for i in range(PROBE_TEXTS):
        if i % 2 == 0:
            half = " ".join(words[w] for w in rng.choice(WORDS, size=AUDIT_HALF, replace=False))
            rows.append((f"{half} {half}", "yes"))
        else:
            rows.append((" ".join(words[w] for w in rng.choice(WORDS, size=2 * AUDIT_HALF, replace=False)), "no"))
    return rows


def build_config() -> Any:
    from transformers import GPT2Config

    return GPT2Config(vocab_size=WORDS + len(SPECIAL), n_positions=64, n_embd=64, n_layer=2, n_head=4, n_inner=128,
                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
                      pad_token_id=1, use_cache=False)


@contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train(seed: int = 0, *, steps: int = STEPS) -> tuple[Any, dict[str, float]]:
    """Trains the model with a fixed seed on one thread (its matrices are too small for a second thread to pay,
    and on a shared machine a second one spins); returns it and what training measured."""
    from transformers import GPT2LMHeadModel

    torch.manual_seed(seed)
    model = GPT2LMHeadModel(build_config())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 100))
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    with _threads(1):
        model.train()
        for _ in range(steps):
            ids = training_batch(rng, BATCH)
            loss = model(input_ids=ids, labels=ids).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            warmup.step()
        model.eval()  # type: ignore[no-untyped-call]  # transformers' PreTrainedModel.eval is unannotated
    return model, {"train_seconds": round(time.perf_counter() - started, 1), "train_steps": steps,
                   "final_train_loss": round(float(loss.detach()), 4)}


def prepare(cache_dir: Path, *, seed: int = 0) -> dict[str, Any]:
    """Trains once and caches the model directory (weights, config, tokenizer) and the audit texts (CSV)."""
    folder = cache_dir / f"{VERSION}-seed{seed}"
    model_dir, data, info_file = folder / "model", folder / "texts.csv", folder / "info.json"
    probes = folder / "repeats.csv"
    with cache_lock(folder):
        if not (info_file.is_file() and data.is_file() and (model_dir / "config.json").is_file()):
            model, info = train(seed)
            folder.mkdir(parents=True, exist_ok=True)
            model.save_pretrained(model_dir)
            tokenizer().save_pretrained(model_dir)
            with data.open("w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(["text"])
                writer.writerows([t] for t in audit_texts(seed))
            info_file.write_text(json.dumps({**info, "seed": seed}))
        if not probes.is_file():  # written apart: a cache from before it keeps its model
            with probes.open("w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(["text", "repeated"])
                writer.writerows(probe_rows(seed))
        info = json.loads(info_file.read_text())
    return {"model": str(model_dir), "data": str(data), "probes": str(probes), **info}
