"""Stage 1, load subject: every supported way of naming a model and its data yields the right Subject."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from auditor.config import AuditConfig, DataSpec, ModelSpec
from auditor.errors import DataError, ModelLoadError
from auditor.subject import Subject, load_subject, map_labels
from tests.conftest import CLASS_NAMES, IMAGE_CLASSES, SCRIPT_TEXT, TEXT_ROWS
from tests.models import CifarResNet, TinyCNN, build_tiny_cnn, build_wrapped_tiny_cnn


def load(model: str | Path, data: str | Path, **spec: object) -> Subject:
    """load_subject for `model` on `data`, on the CPU; `spec` sets ModelSpec / DataSpec fields."""
    model_fields = {k: v for k, v in spec.items() if k in ModelSpec.model_fields}
    data_fields = {k: v for k, v in spec.items() if k in DataSpec.model_fields}
    seed = spec.pop("seed", 0)
    config = AuditConfig(model=ModelSpec(path=str(model), **model_fields),
                         data=DataSpec(path=str(data), **data_fields), device="cpu", seed=seed)
    return load_subject(config)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- Hugging Face text models --------------------------------------------------------------------------

@pytest.mark.parametrize("data_fixture", ["text_csv", "text_jsonl"])
def test_hf_text_classifier_on_text_data(data_fixture: str, tiny_bert_dir: Path,
                                        request: pytest.FixtureRequest) -> None:
    subject = load(tiny_bert_dir, request.getfixturevalue(data_fixture))

    assert (subject.modality, subject.task) == ("text", "classification")
    assert subject.class_names == CLASS_NAMES
    assert subject.labels is not None
    truth = dict(TEXT_ROWS)  # texts are audited shortest first (cap_samples)
    assert subject.data.texts is not None and sorted(subject.data.texts) == sorted(truth)
    assert subject.labels.tolist() == [CLASS_NAMES.index(truth[t]) for t in subject.data.texts]
    assert subject.n_outputs == 2 and len(subject) == len(TEXT_ROWS)


def test_markup_in_text_is_kept_as_data(tiny_bert_dir: Path, text_csv: Path) -> None:
    subject = load(tiny_bert_dir, text_csv)

    assert subject.data.texts is not None and SCRIPT_TEXT in subject.data.texts


def test_batches_feed_the_text_model(tiny_bert_dir: Path, text_csv: Path) -> None:
    subject = load(tiny_bert_dir, text_csv)

    batches = list(subject.batches(5))
    assert [(b.start, b.stop) for b in batches] == [(0, 5), (5, 10), (10, 12)]
    with torch.no_grad():
        scores = subject.adapter.forward(subject.model, batches[0].inputs)
    assert tuple(scores.shape) == (5, 2)
    assert batches[0].labels is not None and batches[0].labels.tolist() == subject.labels[:5].tolist()


def test_bare_encoder_is_audited_as_an_embedding_without_labels(tiny_encoder_dir: Path, text_csv: Path) -> None:
    subject = load(tiny_encoder_dir, text_csv)

    assert (subject.modality, subject.task) == ("text", "embedding")
    assert subject.labels is None and subject.class_names == []
    assert subject.n_outputs == 32  # the pooled hidden state
    assert subject.loaded.has_head is False


def test_bare_encoder_with_head_is_a_classifier(tiny_encoder_dir: Path, encoder_head_file: Path,
                                                text_csv: Path) -> None:
    bare = load(tiny_encoder_dir, text_csv)
    subject = load(tiny_encoder_dir, text_csv, head=str(encoder_head_file))

    assert subject.task == "classification"
    assert subject.class_names == CLASS_NAMES
    assert subject.labels is not None
    truth = dict(TEXT_ROWS)  # texts are audited shortest first (cap_samples)
    assert subject.data.texts is not None and sorted(subject.data.texts) == sorted(truth)
    assert subject.labels.tolist() == [CLASS_NAMES.index(truth[t]) for t in subject.data.texts]
    assert len(list(subject.model.named_modules())) == len(list(bare.model.named_modules())) + 2
    head = subject.model.get_submodule("head")
    assert torch.equal(head.weight, load_file(str(encoder_head_file))["weight"])


def test_head_file_is_part_of_the_weights_digest(tiny_encoder_dir: Path, encoder_head_file: Path,
                                                 text_csv: Path) -> None:
    bare = load(tiny_encoder_dir, text_csv)
    with_head = load(tiny_encoder_dir, text_csv, head=str(encoder_head_file))

    assert bare.loaded.weights_sha256 == sha256_of(tiny_encoder_dir / "model.safetensors")
    assert with_head.loaded.weights_sha256 not in (None, bare.loaded.weights_sha256)


# --- Hugging Face image models -------------------------------------------------------------------------

def test_hf_image_classifier_on_an_image_folder(tiny_vit_dir: Path, image_folder: Path) -> None:
    subject = load(tiny_vit_dir, image_folder)

    assert (subject.modality, subject.task) == ("image", "classification")
    assert subject.class_names == IMAGE_CLASSES
    assert subject.labels is not None and subject.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    batch = next(subject.batches(5))
    assert tuple(batch.inputs["pixel_values"].shape) == (5, 3, 16, 16)


def test_files_in_an_image_folder_that_are_not_images_are_listed(tmp_path: Path, image_folder: Path, tiny_vit_dir: Path,
                                                                 run_cli: Any) -> None:
    import shutil

    folder = tmp_path / "images"
    shutil.copytree(image_folder, folder)
    (folder / "circle" / "notes.txt").write_text("taken on a cloudy day", encoding="utf-8")
    (folder / "README.md").write_text("three shapes", encoding="utf-8")

    result = run_cli("run", "--model", tiny_vit_dir, "--data", folder, "--out", tmp_path / "audit",
                     "--formats", "json,html", "--quiet")

    assert result.exit_code == 0, result.stderr
    meta = json.loads((tmp_path / "audit" / "audit.json").read_text())["metadata"]
    assert meta["n_samples"] == 12
    assert (meta["data_skipped_count"], meta["data_skipped_files"]) == (2, ["README.md", "circle/notes.txt"])
    html = (tmp_path / "audit" / "report.html").read_text()
    assert "2 files in the image folder are not images and were skipped: README.md, circle/notes.txt." in html


# --- factories and weight files ------------------------------------------------------------------------

def assert_holds_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    loaded = model.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_factory_with_safetensors_weights(tiny_cnn_safetensors: Path, tiny_cnn_npz: Path) -> None:
    subject = load("tests.models:build_tiny_cnn", tiny_cnn_npz, weights=str(tiny_cnn_safetensors))

    assert isinstance(subject.model, TinyCNN)
    state = load_file(str(tiny_cnn_safetensors))
    assert not torch.equal(build_tiny_cnn().fc.weight, state["fc.weight"])  # the file differs from the init
    assert_holds_weights(subject.model, state)
    assert (subject.modality, subject.task, subject.n_outputs) == ("image", "classification", 3)
    assert subject.class_names == ["0", "1", "2"]
    assert subject.labels is not None and subject.labels.tolist() == [i % 3 for i in range(24)]
    assert subject.loaded.weights_sha256 == sha256_of(tiny_cnn_safetensors)
    assert subject.model.training is False


def test_factory_with_a_torch_state_dict_file(tmp_path: Path, tiny_cnn_safetensors: Path, tiny_cnn_npz: Path) -> None:
    state = load_file(str(tiny_cnn_safetensors))
    weights = tmp_path / "tiny_cnn.pt"
    torch.save(state, weights)

    subject = load("tests.models:build_tiny_cnn", tiny_cnn_npz, weights=str(weights))

    assert_holds_weights(subject.model, state)
    assert subject.loaded.weights_sha256 == sha256_of(weights)


def test_a_pickled_module_loads_only_when_trusted(tmp_path: Path, tiny_cnn_safetensors: Path,
                                                  tiny_cnn_npz: Path) -> None:
    module = TinyCNN()
    module.load_state_dict(load_file(str(tiny_cnn_safetensors)))
    path = tmp_path / "whole_model.pt"
    torch.save(module, path)

    as_model = load(path, tiny_cnn_npz, trust_pickle=True)
    as_weights = load("tests.models:build_tiny_cnn", tiny_cnn_npz, weights=str(path), trust_pickle=True)

    assert isinstance(as_model.model, TinyCNN)
    assert_holds_weights(as_model.model, module.state_dict())
    assert as_model.loaded.weights_sha256 == sha256_of(path)
    assert_holds_weights(as_weights.model, module.state_dict())


# --- checkpoints as people publish them ------------------------------------------------------------------

def trained_resnet_state() -> dict[str, torch.Tensor]:
    """A CifarResNet state_dict that differs from the factory's init, with BatchNorm statistics."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        model = CifarResNet().train()
        with torch.no_grad():
            model(torch.randn(8, 3, 16, 16))
    return model.eval().state_dict()


def as_published(state: dict[str, torch.Tensor], *, prefix: str = "module.") -> dict[str, torch.Tensor]:
    """The state dict as an old nn.DataParallel training script saved it: every key prefixed, no
    BatchNorm `num_batches_tracked` (torch < 0.4.1), no module-version metadata."""
    return {prefix + k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def test_an_old_dataparallel_checkpoint_in_a_wrapper_dict_loads(tmp_path: Path, cifar_npz: Path) -> None:
    state = trained_resnet_state()
    weights = tmp_path / "resnet8.th"
    torch.save({"state_dict": as_published(state), "epoch": 200, "best_prec1": 91.7}, weights)

    subject = load("tests.models:build_cifar_resnet", cifar_npz, weights=str(weights))

    loaded = subject.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if not k.endswith("num_batches_tracked"))
    loading = subject.loaded.weights_loading
    assert loading is not None
    assert (loading.wrapper_key, loading.wrapper_other_keys) == ("state_dict", ["epoch", "best_prec1"])
    assert loading.stripped_prefix == "module."
    assert sorted(loading.filled_keys) == sorted(k for k in state if k.endswith("num_batches_tracked"))
    assert len(loading.filled_keys) == 7


@pytest.mark.parametrize("counters", [True, False])
def test_a_current_dataparallel_state_dict_is_judged_like_torch_judges_the_unwrapped_one(
        counters: bool, tmp_path: Path, cifar_npz: Path) -> None:
    state = torch.nn.DataParallel(CifarResNet()).state_dict()  # keys and module versions under "module."
    if not counters:
        for key in [k for k in state if k.endswith("num_batches_tracked")]:
            del state[key]
    weights = tmp_path / "dp.pt"
    torch.save(state, weights)

    if counters:
        subject = load("tests.models:build_cifar_resnet", cifar_npz, weights=str(weights))
        assert subject.loaded.weights_loading is not None
        assert (subject.loaded.weights_loading.stripped_prefix, subject.loaded.weights_loading.filled_keys) == \
            ("module.", [])
    else:  # this torch's BatchNorm version says the counters must be there: torch refuses, and so do we
        with pytest.raises(ModelLoadError, match=r"missing 7 key\(s\)"):
            load("tests.models:build_cifar_resnet", cifar_npz, weights=str(weights))


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "model.", "module._orig_mod."])
def test_a_prefix_on_every_key_is_removed(prefix: str, tmp_path: Path, tiny_cnn_safetensors: Path,
                                          tiny_cnn_npz: Path) -> None:
    from safetensors.torch import save_file

    state = load_file(str(tiny_cnn_safetensors))
    weights = tmp_path / "wrapped.safetensors"
    save_file({prefix + k: v for k, v in state.items()}, str(weights))

    subject = load("tests.models:build_tiny_cnn", tiny_cnn_npz, weights=str(weights))

    assert_holds_weights(subject.model, state)
    assert subject.loaded.weights_loading is not None
    assert subject.loaded.weights_loading.stripped_prefix == prefix


def test_a_prefix_the_model_itself_uses_is_kept(tmp_path: Path, tiny_cnn_npz: Path) -> None:
    model = build_wrapped_tiny_cnn()  # its own keys are model.conv.weight, ...
    weights = tmp_path / "wrapped.pt"
    torch.save(model.state_dict(), weights)

    subject = load("tests.models:build_wrapped_tiny_cnn", tiny_cnn_npz, weights=str(weights))

    assert_holds_weights(subject.model, model.state_dict())
    assert subject.loaded.weights_loading is None  # a plain strict load: nothing to say


@pytest.mark.parametrize("key", ["state_dict", "model_state_dict"])  # training scripts; the PyTorch tutorial
def test_a_checkpoint_dict_loads_its_state_dict(key: str, tmp_path: Path, tiny_cnn_safetensors: Path,
                                                tiny_cnn_npz: Path) -> None:
    state = load_file(str(tiny_cnn_safetensors))
    weights = tmp_path / "checkpoint.pth.tar"
    torch.save({"epoch": 3, key: state, "loss": 0.25}, weights)

    subject = load("tests.models:build_tiny_cnn", tiny_cnn_npz, weights=str(weights))

    assert_holds_weights(subject.model, state)
    assert subject.loaded.weights_loading is not None
    assert subject.loaded.weights_loading.wrapper_key == key
    assert subject.loaded.weights_loading.wrapper_other_keys == ["epoch", "loss"]
    assert subject.loaded.weights_loading.stripped_prefix is None


def test_what_loading_adjusted_is_in_the_report(tmp_path: Path, cifar_npz: Path, run_cli: Any) -> None:
    weights = tmp_path / "resnet8.pth.tar"
    torch.save({"state_dict": as_published(trained_resnet_state()), "epoch": 200}, weights)

    result = run_cli("run", "--model", "tests.models:build_cifar_resnet", "--weights", weights, "--data", cifar_npz,
                     "--out", tmp_path / "audit", "--formats", "json,html", "--quiet")

    assert result.exit_code == 0, result.stderr
    meta = json.loads((tmp_path / "audit" / "audit.json").read_text())["metadata"]
    assert meta["weights_loading"]["stripped_prefix"] == "module."
    assert meta["weights_loading"]["wrapper_other_keys"] == ["epoch"]
    html = (tmp_path / "audit" / "report.html").read_text()
    assert "began with &#39;module.&#39;" in html and "num_batches_tracked counters" in html


def test_a_model_is_named_by_its_class_or_by_the_name_option(tiny_cnn_npz: Path, tiny_bert_dir: Path,
                                                              tiny_encoder_dir: Path, encoder_head_file: Path,
                                                              text_csv: Path) -> None:
    factory = load("tests.models:build_tiny_cnn", tiny_cnn_npz).loaded
    assert (factory.name, factory.source) == ("TinyCNN", "tests.models:build_tiny_cnn")
    assert load("tests.models:build_tiny_cnn", tiny_cnn_npz, name="bars-cnn").loaded.name == "bars-cnn"
    hf = load(tiny_bert_dir, text_csv).loaded
    assert (hf.name, hf.source) == ("BertForSequenceClassification", str(tiny_bert_dir))
    assert load(tiny_encoder_dir, text_csv, head=str(encoder_head_file)).loaded.name == "BertModel with a linear head"


def test_a_dict_output_with_logits_is_read_through_logits(tiny_cnn_npz: Path) -> None:
    subject = load("tests.models:build_dict_output", tiny_cnn_npz)

    batch = next(subject.batches(4))
    with torch.no_grad():
        scores = subject.adapter.forward(subject.model, batch.inputs)
        expected = subject.model(batch.inputs["x"])["logits"]
    assert torch.equal(scores, expected)


# --- sampling --------------------------------------------------------------------------------------------

def test_max_samples_draws_a_seeded_subset_audited_shortest_first(tiny_bert_dir: Path, text_csv: Path) -> None:
    """The subset is the seed's; its texts are audited shortest first (a batch pads to its longest), ties in file
    order."""
    def texts(seed: int) -> list[str]:
        subject = load(tiny_bert_dir, text_csv, max_samples=5, seed=seed)
        assert subject.labels is not None and len(subject.labels) == 5
        assert subject.data.texts is not None
        return subject.data.texts

    order = [text for text, _ in TEXT_ROWS]
    first, again, other = texts(0), texts(0), texts(1)

    assert len(first) == 5 and first == again
    assert other != first
    for subset in (first, other):
        keys = [(len(re.findall(r"\w+|[^\w\s]", t)), len(t), order.index(t)) for t in subset]
        assert keys == sorted(keys)


def test_texts_batch_by_length_so_padding_shrinks(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """Texts of very different lengths in alternation: audited shortest first, every batch of 4 holds texts of
    one length, so it pads nothing; the data's own order would have padded every short text to the long ones."""
    rows = [(" ".join(["good"] * (2 if i % 2 else 30)) + f" {i}.", "positive" if i % 3 else "negative")
            for i in range(16)]
    path = tmp_path / "mixed.csv"
    path.write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows), encoding="utf-8")
    subject = load(tiny_bert_dir, path, max_samples=16, seed=0)
    batches = list(subject.batches(4))
    padded = sum(int((b.inputs["attention_mask"] == 0).sum()) for b in batches)
    assert padded == 0
    truth = dict(rows)
    assert subject.data.texts is not None and subject.labels is not None
    assert [CLASS_NAMES[i] for i in subject.labels.tolist()] == [truth[t] for t in subject.data.texts]


def test_labels_follow_their_samples_when_subsampled(tiny_bert_dir: Path, text_csv: Path) -> None:
    subject = load(tiny_bert_dir, text_csv, max_samples=7, seed=3)

    truth = dict(TEXT_ROWS)
    assert subject.data.texts is not None and subject.labels is not None
    assert [CLASS_NAMES[i] for i in subject.labels.tolist()] == [truth[t] for t in subject.data.texts]


def test_fewer_samples_than_max_keeps_them_all(tiny_cnn_npz: Path) -> None:
    subject = load("tests.models:build_tiny_cnn", tiny_cnn_npz, max_samples=100)

    assert len(subject) == 24
    x = np.load(tiny_cnn_npz)["x"]
    assert subject.data.arrays is not None and np.array_equal(subject.data.arrays, x)


# --- map_labels ------------------------------------------------------------------------------------------

def test_map_labels_takes_integers_as_indices() -> None:
    assert map_labels([2, 0, 1, 0], n_outputs=3, model_names=[]) == ([2, 0, 1, 0], ["0", "1", "2"])


def test_map_labels_takes_digit_strings_as_indices() -> None:
    assert map_labels(["1", " 0", "2"], n_outputs=3, model_names=[]) == ([1, 0, 2], ["0", "1", "2"])


def test_map_labels_names_integer_classes_with_the_models_names() -> None:
    assert map_labels([1, 0], n_outputs=2, model_names=CLASS_NAMES) == ([1, 0], CLASS_NAMES)


def test_map_labels_matches_names_case_insensitively() -> None:
    model_names = ["Negative", "Positive"]
    indices, names = map_labels(["positive", "NEGATIVE", "Positive "], n_outputs=2, model_names=model_names)

    assert indices == [1, 0, 1]
    assert names == model_names  # the model's spelling is the one shown


def test_map_labels_prefers_the_models_names_over_digits() -> None:
    # A model whose classes are themselves digits, in an unusual order: the names win.
    assert map_labels(["1", "0"], n_outputs=2, model_names=["1", "0"]) == ([0, 1], ["1", "0"])


def test_map_labels_sorts_names_when_the_model_has_none() -> None:
    indices, names = map_labels(["cat", "ant", "bee", "ant"], n_outputs=3, model_names=[])

    assert names == ["ant", "bee", "cat"]
    assert indices == [2, 0, 1, 0]


def test_map_labels_pads_names_for_classes_the_data_lacks() -> None:
    indices, names = map_labels(["dog", "cat"], n_outputs=3, model_names=[])

    assert (indices, names) == ([1, 0], ["cat", "dog", "2"])


def test_map_labels_treats_one_logit_as_binary() -> None:
    assert map_labels([0, 1, 1], n_outputs=1, model_names=[]) == ([0, 1, 1], ["0", "1"])
    with pytest.raises(DataError, match=r"\[2\]"):
        map_labels([0, 2], n_outputs=1, model_names=[])


@pytest.mark.parametrize(("raw", "n_outputs", "names", "cause"), [
    ([0, 3], 3, [], r"labels \[3\] have no class"),
    ([-1, 0], 2, [], r"labels \[-1\] have no class"),
    (["neutral", "positive"], 2, CLASS_NAMES, r"\['neutral'\] are not classes"),
    (["a", "b", "c"], 2, [], r"3 label values"),
])
def test_map_labels_refuses_labels_without_a_class(raw: list[str | int], n_outputs: int, names: list[str],
                                                   cause: str) -> None:
    with pytest.raises(DataError, match=cause):
        map_labels(raw, n_outputs=n_outputs, model_names=names)


def test_factory_cnn_on_an_image_folder_resized_to_grey(image_folder: Path, tiny_cnn_safetensors: Path,
                                                        run_cli: Any, tmp_path: Path) -> None:
    result = run_cli("run", "--model", "tests.models:build_tiny_cnn", "--weights", tiny_cnn_safetensors,
                     "--data", image_folder, "--image-size", "8", "--image-mode", "L", "--out", tmp_path,
                     "--formats", "json", "--quiet")
    assert result.exit_code == 0, result.stderr
    audit = json.loads((tmp_path / "audit.json").read_text())
    assert audit["metadata"]["modality"] == "image"
    assert audit["metadata"]["class_names"] == ["circle", "square", "stripe"]
    assert audit["modules"][1]["output_shape"][1:] == [4, 8, 8]  # conv on 1x8x8 grey images
