"""Peer check: TransformerLens (its TransformerBridge over the same Hugging Face weights, its hook_pattern and
its own head-detector scoring) gives the same previous-token, duplicate-token and induction scores as the
heads analysis, on the same repeated random tokens.

TransformerLens's "mul" score averages over every query row of the sequence, ours over the rows where the
signature is defined (all rows but the first for previous-token, the second half for the others), so its score
is ours times (rows defined) / (all rows). transformer-lens is a test dependency (pinned in pyproject.toml; it
pulls in wandb, datasets and more, 15 s to install, and leaves this project's torch and transformers as they
are); the test is skipped only where it is not installed.
"""

from __future__ import annotations

import pytest
import torch

from auditor.analyses.heads.signatures import measure, probe_tokens
from auditor.kit.lm import lm_layout
from tests.lm_models import save_induction_gpt2, word_tokenizer

tl_bridge = pytest.importorskip("transformer_lens.model_bridge")
head_detector = pytest.importorskip("transformer_lens.head_detector")

LENGTH, SAMPLES = 7, 6


def _random_gpt2(folder):  # type: ignore[no-untyped-def]
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)  # any weights will do: both sides read the same ones
    config = GPT2Config(vocab_size=16, n_positions=32, n_embd=32, n_layer=2, n_head=4, bos_token_id=0,
                        eos_token_id=0, pad_token_id=0, use_cache=False)
    GPT2LMHeadModel(config).save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    return folder


@pytest.mark.parametrize("build", ["random", "induction"])
def test_transformer_lens_agrees_on_every_head(build, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer, GPT2LMHeadModel

    folder = _random_gpt2(tmp_path / "m") if build == "random" else save_induction_gpt2(tmp_path / "m")
    model = GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    layout = lm_layout(model)
    ours = measure(model, layout, tokenizer, length=LENGTH, samples=SAMPLES, seed=0, previous_threshold=1.0,
                   induction_threshold=1.0)
    ids, offset = probe_tokens(model, tokenizer, length=LENGTH, samples=SAMPLES, seed=0)
    assert offset == 1  # the tokenizer has a BOS token
    bridge = tl_bridge.TransformerBridge.boot_transformers(str(folder), hf_model=model, tokenizer=tokenizer)
    _, cache = bridge.run_with_cache(ids)
    rows = ids.shape[1]
    kinds = {"previous_token_head": (ours.previous_token, (rows - 1) / rows),
             "duplicate_token_head": (ours.duplicate_token, LENGTH / rows),
             "induction_head": (ours.induction, LENGTH / rows)}
    for kind, (scores, share) in kinds.items():
        make = getattr(head_detector, f"get_{kind}_detection_pattern")
        for layer in range(len(layout.layers)):
            patterns = cache[f"blocks.{layer}.attn.hook_pattern"]
            for head in range(layout.heads):
                theirs = sum(head_detector.compute_head_attention_similarity_score(
                    patterns[s, head], make(ids[s:s + 1].cpu()), exclude_bos=False, exclude_current_token=False,
                    error_measure="mul") for s in range(SAMPLES)) / SAMPLES
                mine = scores[layout.head_name(layer, head)] * share
                assert theirs == pytest.approx(mine, rel=1e-4, abs=1e-6), (kind, layer, head)
