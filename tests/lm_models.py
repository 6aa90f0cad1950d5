"""Causal language models whose circuits are known by construction, and a word-level tokenizer for them.

`induction_gpt2` is a 2-layer GPT-2 with hand-set weights: head 0 of layer 0 is a previous-token head (it writes
the previous token into a subspace of its own), head 0 of layer 1 is an induction head (its query is the current
token, its key the previous-token subspace, its value copies the attended token onto the unembedding), and
every other head and both MLPs output zeros. The residual stream is [token one-hot | position one-hot |
previous-token one-hot | zeros]; LayerNorms have weight 1 and bias 0.
"""

from __future__ import annotations

from pathlib import Path

import torch

VOCAB = 16
"""Token 0 is BOS; 1..15 are the words w1..w15."""
POSITIONS = 48
D_MODEL = 128
HEADS = 2
HEAD_DIM = D_MODEL // HEADS
SHARP = 3.0
"""Query and key weights: large enough that attention is one-hot to within e^-20."""


def _slots() -> tuple[slice, slice, slice]:
    tokens = slice(0, VOCAB)
    positions = slice(VOCAB, VOCAB + POSITIONS)
    previous = slice(VOCAB + POSITIONS, 2 * VOCAB + POSITIONS)
    return tokens, positions, previous


def word_tokenizer(vocab: int = VOCAB):  # type: ignore[no-untyped-def]  # a transformers tokenizer
    """A whitespace word-level tokenizer: <bos>, w1..w{vocab-1}; every text starts with <bos>."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = {"<bos>": 0, **{f"w{i}": i for i in range(1, vocab)}}
    core = Tokenizer(models.WordLevel(vocab=words, unk_token="<bos>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 0)])
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<bos>", unk_token="<bos>", pad_token="<bos>")


def induction_gpt2():  # type: ignore[no-untyped-def]  # a GPT2LMHeadModel
    """The hand-built 2-layer induction model (eval mode)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=VOCAB, n_positions=POSITIONS, n_embd=D_MODEL, n_layer=2, n_head=HEADS,
                        n_inner=4 * D_MODEL, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0,
                        eos_token_id=0, pad_token_id=0, tie_word_embeddings=True, use_cache=False)
    model = GPT2LMHeadModel(config)
    tokens, positions, previous = _slots()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for name, p in model.named_parameters():
            if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                p.fill_(1.0)
        wte, wpe = model.transformer.wte.weight, model.transformer.wpe.weight
        wte[:, tokens] = torch.eye(VOCAB)
        wpe[:, positions] = torch.eye(POSITIONS)
        d = D_MODEL
        # layer 0, head 0: query at position q matches the key at position q-1; its value is the key's token,
        # written into the previous-token slots. c_attn is a Conv1D: x @ W, W = [W_q | W_k | W_v] (d, 3d).
        attn0 = model.transformer.h[0].attn
        w0 = attn0.c_attn.weight
        for q in range(1, POSITIONS):
            w0[positions.start + q, q] = SHARP                   # query: position q -> head dim q
            w0[positions.start + q - 1, d + q] = SHARP           # key: position q-1 -> head dim q
        for t in range(VOCAB):
            w0[tokens.start + t, 2 * d + t] = 1.0                # value: the token
        scale0 = 1.0 / 7.9  # one-hot entries after ln_1 are about sqrt(d / 2) = 8: write about 1
        for t in range(VOCAB):
            attn0.c_proj.weight[t, previous.start + t] = scale0
        # layer 1, head 0: the current token's query meets the key of the position whose previous token it is;
        # the value copies that position's token into the token slots (read by the tied unembedding).
        attn1 = model.transformer.h[1].attn
        w1 = attn1.c_attn.weight
        for t in range(VOCAB):
            w1[tokens.start + t, t] = SHARP                      # query: current token
            w1[previous.start + t, d + t] = SHARP                # key: the previous token
            w1[tokens.start + t, 2 * d + t] = 1.0                # value: the token itself
            attn1.c_proj.weight[t, tokens.start + t] = 3.0 / 6.5
    return model.eval()


def save_induction_gpt2(folder: Path) -> Path:
    """The hand-built model and its tokenizer as a Hugging Face directory."""
    model = induction_gpt2()
    model.save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    return folder


def repeated_texts(n: int, *, length: int, seed: int) -> list[str]:
    """Texts of `length` distinct random words, then the same words again (drawn with numpy's portable rng)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    texts = []
    for _ in range(n):
        words = rng.choice(np.arange(1, VOCAB), size=length, replace=False)
        half = " ".join(f"w{w}" for w in words)
        texts.append(f"{half} {half}")
    return texts


def write_texts(path: Path, texts: list[str]) -> Path:
    import csv

    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text"])
        for text in texts:
            writer.writerow([text])
    return path


def audit_induction_model(folder: Path, *, analyses: dict[str, object] | None = None, texts: int = 24,
                          length: int = 10, batch_size: int = 8):  # type: ignore[no-untyped-def]  # an AuditReport
    """The audit of the hand-built induction model on repeated texts (heads probed with `length` tokens)."""
    from auditor.config import AnalysesConfig, AuditConfig, DataSpec, ModelSpec
    from auditor.pipeline import run_audit

    model = save_induction_gpt2(folder / "model")
    data = write_texts(folder / "texts.csv", repeated_texts(texts, length=length, seed=0))
    tables = {"heads": {"length": length}, **(analyses or {})}
    config = AuditConfig(model=ModelSpec(path=str(model)), data=DataSpec(path=str(data)), batch_size=batch_size,
                         analyses=AnalysesConfig.model_validate(tables))
    return run_audit(config)


NEURON = 3
"""`neuron_gpt2`: MLP neuron 3 of layer 0 reads token w5's slot of the residual stream and writes into w7's."""
READS, WRITES = 5, 7


def neuron_gpt2():  # type: ignore[no-untyped-def]  # a GPT2LMHeadModel
    """The hand-built induction GPT-2 (tests/lm_models.py, whose MLPs output zeros) with one live MLP neuron.

    After ln_2 a token's one-hot slot is its largest entry (about 6.5: three ones in 128 dimensions, normalized),
    every other token slot slightly negative; so the neuron's pre-activation is about 3.5 on w5 and below -3
    elsewhere, where GELU gives it almost nothing (below 0.003 in size). Its output row is w7's slot, which the
    tied unembedding reads as w7's logit. Every other neuron's pre-activation is 0, and GELU(0) = 0."""
    model = induction_gpt2()
    mlp = model.transformer.h[0].mlp
    with torch.no_grad():
        mlp.c_fc.weight[READS, NEURON] = 1.0  # Conv1D: x @ weight, weight (d_model, inner)
        mlp.c_fc.bias[NEURON] = -3.0
        mlp.c_proj.weight[NEURON, WRITES] = 1.0  # weight (inner, d_model): the neuron's output row
    return model


def random_gpt2_ablation(folder, **params):  # type: ignore[no-untyped-def]
    """lm_ablation alone on a randomly initialized (seeded) 3-layer GPT-2 with the word tokenizer."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from auditor.config import AnalysesConfig, AuditConfig, DataSpec, ModelSpec
    from auditor.pipeline import run_audit
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=3, n_head=4, n_inner=64,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
                        pad_token_id=0, use_cache=False)
    model = GPT2LMHeadModel(config)
    with torch.no_grad():  # weights large enough that every part matters: ablations move the loss visibly
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
    model.save_pretrained(folder / "model")
    word_tokenizer().save_pretrained(folder / "model")
    texts = repeated_texts(11, length=6, seed=1) + [" ".join(f"w{i}" for i in range(1, 12))]  # one longer: padding
    data = write_texts(folder / "texts.csv", texts)
    config_ = AuditConfig(model=ModelSpec(path=str(folder / "model")), data=DataSpec(path=str(data)), batch_size=5,
                          analyses=AnalysesConfig.model_validate({"only": ["lm_ablation"], "lm_ablation": params}))
    section = next(s for s in run_audit(config_).sections if s.id == "lm_ablation")
    assert section.error is None, section.error
    return section
