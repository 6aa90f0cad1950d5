"""Bad input through the real command line: exit code 2, one `error:` line naming the cause, no report.

Each test hands `auditor run` one broken thing (model, weights, factory, data, labels, config) and checks
what the user sees. A good run and a dict-output model are here too, so a fixture bug cannot pass as
"every input is rejected".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from auditor.errors import ExitCode
from tests.conftest import CliResult
from tests.models import TinyCNN, build_cifar_resnet

RunCli = Callable[..., CliResult]


def audit_cli(run_cli: RunCli, out: Path, model: str | Path, data: str | Path | None, *extra: str | Path) -> CliResult:
    """`auditor run --model M --data D --out OUT --formats json --quiet [extra]`."""
    args: list[str | Path] = ["run", "--model", model, "--out", out, "--formats", "json", "--quiet", "--device", "cpu"]
    if data is not None:
        args += ["--data", data]
    return run_cli(*args, *extra)


def error_message(result: CliResult, out: Path | None = None) -> str:
    """Asserts the run was refused as bad input and wrote no report; returns its `error:` message."""
    assert result.exit_code == ExitCode.BAD_INPUT, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert "Traceback" not in result.stderr + result.stdout
    assert "internal error" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr  # run_cli's terminal is wide: see test_a_long_error_stays_on_one_line
    message = lines[0]
    assert message.startswith("error: ") and message.count("error:") == 1, message
    if out is not None:
        assert not (out / "audit.json").exists()
        assert not out.exists() or not any(out.iterdir()), sorted(p.name for p in out.iterdir())
    return message


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "audit"


@pytest.fixture
def pickled_cnn(tmp_path: Path) -> Path:
    """A whole TinyCNN saved with torch.save: loading it means unpickling."""
    path = tmp_path / "whole_model.pt"
    torch.save(TinyCNN(), path)
    return path


def save_npz(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    np.savez(path, x=x.astype(np.float32), y=y)
    return path


# --- good input: the fixtures and the command work at all ------------------------------------------------

def test_a_valid_run_writes_audit_json(run_cli: RunCli, out: Path, tiny_cnn_safetensors: Path,
                                       tiny_cnn_npz: Path) -> None:
    result = audit_cli(run_cli, out, "tests.models:build_tiny_cnn", tiny_cnn_npz, "--weights", tiny_cnn_safetensors)

    assert result.exit_code == ExitCode.OK, (result.stdout, result.stderr, result.exception)
    report = json.loads((out / "audit.json").read_text(encoding="utf-8"))
    assert report["metadata"]["n_samples"] == 24
    assert report["metadata"]["class_names"] == ["0", "1", "2"]
    assert not (out / "report.html").exists()  # --formats json only


def test_a_valid_text_run_keeps_markup_as_data(run_cli: RunCli, out: Path, tiny_bert_dir: Path,
                                               text_csv: Path) -> None:
    result = audit_cli(run_cli, out, tiny_bert_dir, text_csv)

    assert result.exit_code == ExitCode.OK, (result.stdout, result.stderr, result.exception)
    report = json.loads((out / "audit.json").read_text(encoding="utf-8"))
    assert (report["metadata"]["modality"], report["metadata"]["task"]) == ("text", "classification")
    assert report["metadata"]["class_names"] == ["negative", "positive"]


def test_a_model_returning_logits_and_aux_is_audited(run_cli: RunCli, out: Path, tiny_cnn_npz: Path) -> None:
    result = audit_cli(run_cli, out, "tests.models:build_dict_output", tiny_cnn_npz)

    assert result.exit_code == ExitCode.OK, (result.stdout, result.stderr, result.exception)
    assert json.loads((out / "audit.json").read_text(encoding="utf-8"))["metadata"]["n_classes"] == 3


# --- the model ------------------------------------------------------------------------------------------

def test_missing_model_path(run_cli: RunCli, out: Path, tmp_path: Path, tiny_cnn_npz: Path) -> None:
    missing = tmp_path / "no-such-model"
    message = error_message(audit_cli(run_cli, out, missing, tiny_cnn_npz), out)

    assert "model not found" in message and str(missing) in message


def test_no_model_at_all(run_cli: RunCli, out: Path, tiny_cnn_npz: Path) -> None:
    result = run_cli("run", "--data", tiny_cnn_npz, "--out", out, "--formats", "json", "--quiet")

    assert "no model given" in error_message(result, out)


def test_corrupt_safetensors_weights(run_cli: RunCli, out: Path, tmp_path: Path, tiny_cnn_npz: Path) -> None:
    weights = tmp_path / "corrupt.safetensors"
    weights.write_bytes(np.random.default_rng(0).bytes(2048))

    message = error_message(audit_cli(run_cli, out, "tests.models:build_tiny_cnn", tiny_cnn_npz,
                                      "--weights", weights), out)

    assert "not a valid safetensors file" in message and str(weights) in message


def test_truncated_safetensors_weights(run_cli: RunCli, out: Path, tmp_path: Path, tiny_cnn_safetensors: Path,
                                       tiny_cnn_npz: Path) -> None:
    whole = tiny_cnn_safetensors.read_bytes()
    weights = tmp_path / "truncated.safetensors"
    weights.write_bytes(whole[: len(whole) // 2])

    message = error_message(audit_cli(run_cli, out, "tests.models:build_tiny_cnn", tiny_cnn_npz,
                                      "--weights", weights), out)

    assert "not a valid safetensors file" in message and "truncated" in message


def test_a_weights_file_that_does_not_exist(run_cli: RunCli, out: Path, tmp_path: Path, tiny_cnn_npz: Path) -> None:
    weights = tmp_path / "nowhere.safetensors"
    message = error_message(audit_cli(run_cli, out, "tests.models:build_tiny_cnn", tiny_cnn_npz,
                                      "--weights", weights), out)

    assert "weights file not found" in message


def test_weights_whose_keys_do_not_match(run_cli: RunCli, out: Path, tmp_path: Path, tiny_cnn_safetensors: Path,
                                         tiny_cnn_npz: Path) -> None:
    state = load_file(str(tiny_cnn_safetensors))
    state["classifier.weight"] = state.pop("fc.weight")  # as if the model had renamed its last layer
    weights = tmp_path / "renamed.pt"
    torch.save(state, weights)

    message = error_message(audit_cli(run_cli, out, "tests.models:build_tiny_cnn", tiny_cnn_npz,
                                      "--weights", weights), out)

    assert "do not match the model" in message
    assert "missing 1 key(s)" in message and "fc.weight" in message
    assert "unexpected 1 key(s)" in message and "classifier.weight" in message


def test_weights_whose_shapes_do_not_match(run_cli: RunCli, out: Path, tmp_path: Path, tiny_cnn_safetensors: Path,
                                           tiny_cnn_npz: Path) -> None:
    from safetensors.torch import save_file

    state = load_file(str(tiny_cnn_safetensors))
    state["fc.weight"], state["fc.bias"] = torch.zeros(5, 64), torch.zeros(5)  # a 5-class head
    weights = tmp_path / "five_classes.safetensors"
    save_file(state, str(weights))

    message = error_message(audit_cli(run_cli, out, "tests.models:build_tiny_cnn", tiny_cnn_npz,
                                      "--weights", weights), out)

    assert "shape mismatch" in message and "fc.weight (5, 64) vs (3, 64)" in message


def test_a_current_state_dict_without_batchnorm_counters_is_refused_as_torch_refuses_it(
        run_cli: RunCli, out: Path, tmp_path: Path, cifar_npz: Path) -> None:
    state = build_cifar_resnet().state_dict()  # saved by this torch: its BatchNorm version says "has counters"
    for key in [k for k in state if k.endswith("num_batches_tracked")]:
        del state[key]
    weights = tmp_path / "no_counters.pt"
    torch.save(state, weights)
    with pytest.raises(RuntimeError, match="num_batches_tracked"):
        build_cifar_resnet().load_state_dict(torch.load(weights, weights_only=True), strict=True)

    message = error_message(audit_cli(run_cli, out, "tests.models:build_cifar_resnet", cifar_npz,
                                      "--weights", weights), out)

    assert "missing 7 key(s)" in message and "bn1.num_batches_tracked" in message
    assert "unexpected" not in message


def test_a_prefixed_checkpoint_of_another_model_names_the_keys(run_cli: RunCli, out: Path, tmp_path: Path,
                                                               tiny_cnn_safetensors: Path, tiny_cnn_npz: Path) -> None:
    state = load_file(str(tiny_cnn_safetensors))
    state["fc.weight"] = torch.zeros(5, 64)
    state["extra.weight"] = torch.zeros(2)
    weights = tmp_path / "dp.pt"
    torch.save({"module." + k: v for k, v in state.items()}, weights)

    message = error_message(audit_cli(run_cli, out, "tests.models:build_tiny_cnn", tiny_cnn_npz,
                                      "--weights", weights), out)

    assert "after removing the prefix 'module.'" in message
    assert "unexpected 1 key(s)" in message and "extra.weight" in message
    assert "fc.weight (5, 64) vs (3, 64)" in message and "missing" not in message


def test_a_pickled_module_as_weights_needs_trust_pickle(run_cli: RunCli, out: Path, pickled_cnn: Path,
                                                        tiny_cnn_npz: Path) -> None:
    message = error_message(audit_cli(run_cli, out, "tests.models:build_tiny_cnn", tiny_cnn_npz,
                                      "--weights", pickled_cnn), out)

    assert "--trust-pickle" in message and "was not unpickled" in message


def test_a_pickled_module_as_model_needs_trust_pickle(run_cli: RunCli, out: Path, pickled_cnn: Path,
                                                      tiny_cnn_npz: Path) -> None:
    message = error_message(audit_cli(run_cli, out, pickled_cnn, tiny_cnn_npz), out)

    assert "--trust-pickle" in message and str(pickled_cnn) in message


def test_a_pickled_module_as_model_loads_with_trust_pickle(run_cli: RunCli, out: Path, pickled_cnn: Path,
                                                           tiny_cnn_npz: Path) -> None:
    result = audit_cli(run_cli, out, pickled_cnn, tiny_cnn_npz, "--trust-pickle")

    assert result.exit_code == ExitCode.OK, (result.stdout, result.stderr, result.exception)
    assert (out / "audit.json").is_file()


def test_safetensors_given_as_model(run_cli: RunCli, out: Path, tiny_cnn_safetensors: Path,
                                    tiny_cnn_npz: Path) -> None:
    message = error_message(audit_cli(run_cli, out, tiny_cnn_safetensors, tiny_cnn_npz), out)

    assert "--weights" in message


def test_a_factory_module_that_does_not_exist(run_cli: RunCli, out: Path, tiny_cnn_npz: Path) -> None:
    message = error_message(audit_cli(run_cli, out, "tests.no_such_models:build", tiny_cnn_npz), out)

    assert "factory module 'tests.no_such_models' not found" in message


def test_a_factory_attribute_that_does_not_exist(run_cli: RunCli, out: Path, tiny_cnn_npz: Path) -> None:
    message = error_message(audit_cli(run_cli, out, "tests.models:build_nothing", tiny_cnn_npz), out)

    assert "has no 'build_nothing'" in message


def test_a_factory_returning_a_non_module(run_cli: RunCli, out: Path, tiny_cnn_npz: Path) -> None:
    message = error_message(audit_cli(run_cli, out, "tests.models:build_not_a_module", tiny_cnn_npz), out)

    assert "returned dict, not a torch.nn.Module" in message


def test_a_model_returning_a_dict_without_logits(run_cli: RunCli, out: Path, tiny_cnn_npz: Path) -> None:
    message = error_message(audit_cli(run_cli, out, "tests.models:build_dict_no_logits", tiny_cnn_npz), out)

    assert "keys ['a', 'b']" in message and "no 'logits'" in message


def test_head_on_a_model_that_has_one(run_cli: RunCli, out: Path, tiny_bert_dir: Path, encoder_head_file: Path,
                                      text_csv: Path) -> None:
    message = error_message(audit_cli(run_cli, out, tiny_bert_dir, text_csv, "--head", encoder_head_file), out)

    assert "already has a classification head" in message


# --- the data -------------------------------------------------------------------------------------------

def test_missing_data_path(run_cli: RunCli, out: Path, tmp_path: Path, tiny_bert_dir: Path) -> None:
    missing = tmp_path / "reviews.csv"
    message = error_message(audit_cli(run_cli, out, tiny_bert_dir, missing), out)

    assert "data not found" in message and str(missing) in message


def test_data_the_model_rejects(run_cli: RunCli, out: Path, tmp_path: Path) -> None:
    data = save_npz(tmp_path / "rgb5.npz", np.zeros((6, 3, 5, 5)), np.zeros(6, dtype=np.int64))

    message = error_message(audit_cli(run_cli, out, "tests.models:build_tiny_cnn", data), out)

    assert "the model rejected the data" in message and "(2, 3, 5, 5)" in message


@pytest.mark.parametrize(("model", "mode", "hint"), [
    ("tests.models:build_tiny_cnn", "RGB", "takes 1-channel input but the images were read as RGB (3 channels): "
                                           "pass --image-mode L"),
    ("tests.models:build_cifar_resnet", "L", "takes 3-channel input but the images were read as grey (1 channel): "
                                             "pass --image-mode RGB"),
])
def test_grey_and_colour_images_given_to_the_other_kind_of_model_get_a_hint(
        model: str, mode: str, hint: str, run_cli: RunCli, out: Path, image_folder: Path) -> None:
    size = "8" if "tiny_cnn" in model else "16"
    message = error_message(audit_cli(run_cli, out, model, image_folder, "--image-size", size, "--image-mode", mode), out)

    assert "the model rejected the data" in message and hint in message


def test_non_finite_inputs_are_bad_data(run_cli: RunCli, out: Path, tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(40, 1, 8, 8))
    x[3, 0, 1, 1], x[3, 0, 2, 2], x[17, 0, 0, 0] = np.nan, np.nan, np.inf
    data = save_npz(tmp_path / "nan.npz", x, np.arange(40) % 3)

    message = error_message(audit_cli(run_cli, out, "tests.models:build_tiny_cnn", data, "--max-samples", "10"), out)

    assert "2 NaN and 1 Inf values in 2 of 40 samples" in message and "first at sample 3" in message
    assert str(data) in message


def test_an_empty_image_folder(run_cli: RunCli, out: Path, tmp_path: Path, tiny_vit_dir: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()

    message = error_message(audit_cli(run_cli, out, tiny_vit_dir, folder), out)

    assert "has no class sub-folders" in message


def test_an_image_folder_without_images(run_cli: RunCli, out: Path, tmp_path: Path, tiny_vit_dir: Path) -> None:
    folder = tmp_path / "images"
    for name in ("cats", "dogs"):
        (folder / name).mkdir(parents=True)
        (folder / name / "notes.txt").write_text("not an image", encoding="utf-8")

    message = error_message(audit_cli(run_cli, out, tiny_vit_dir, folder), out)

    assert "holds no images" in message


def test_a_csv_with_only_a_header(run_cli: RunCli, out: Path, tmp_path: Path, tiny_bert_dir: Path,
                                  write_csv: Callable[..., Path]) -> None:
    data = write_csv(tmp_path / "empty.csv", [])

    message = error_message(audit_cli(run_cli, out, tiny_bert_dir, data), out)

    assert "holds no rows" in message


def test_a_csv_without_the_label_column(run_cli: RunCli, out: Path, tmp_path: Path, tiny_bert_dir: Path,
                                        write_csv: Callable[..., Path]) -> None:
    data = write_csv(tmp_path / "unlabelled.csv", [("good film", "5")], header=("text", "stars"))

    message = error_message(audit_cli(run_cli, out, tiny_bert_dir, data), out)

    assert "no label column 'label'" in message and "['text', 'stars']" in message


def test_a_csv_without_the_text_column(run_cli: RunCli, out: Path, tmp_path: Path, tiny_bert_dir: Path,
                                       write_csv: Callable[..., Path]) -> None:
    data = write_csv(tmp_path / "reviews.csv", [("good film", "positive")], header=("review", "label"))

    message = error_message(audit_cli(run_cli, out, tiny_bert_dir, data), out)

    assert "no text column 'text'" in message and "['review', 'label']" in message


def test_npz_labels_the_model_has_no_class_for(run_cli: RunCli, out: Path, tmp_path: Path) -> None:
    x = np.zeros((6, 1, 8, 8))
    data = save_npz(tmp_path / "seven.npz", x, np.array([0, 1, 2, 7, 1, 0]))

    message = error_message(audit_cli(run_cli, out, "tests.models:build_tiny_cnn", data), out)

    assert "labels [7] have no class" in message and "3 classes" in message


def test_csv_labels_the_model_has_no_class_for(run_cli: RunCli, out: Path, tmp_path: Path, tiny_bert_dir: Path,
                                               write_csv: Callable[..., Path]) -> None:
    rows = [("a great film", "positive"), ("it was fine", "neutral"), ("awful", "negative")]
    data = write_csv(tmp_path / "three_way.csv", rows)

    message = error_message(audit_cli(run_cli, out, tiny_bert_dir, data), out)

    assert "['neutral'] are not classes of the model" in message and "negative" in message


def test_text_data_for_a_model_without_tokenizer(run_cli: RunCli, out: Path, text_csv: Path) -> None:
    message = error_message(audit_cli(run_cli, out, "tests.models:build_tiny_cnn", text_csv), out)

    assert "has no tokenizer" in message and str(text_csv) in message


def test_an_unsupported_data_file(run_cli: RunCli, out: Path, tmp_path: Path, tiny_bert_dir: Path) -> None:
    data = tmp_path / "reviews.parquet"
    data.write_bytes(b"PAR1")

    message = error_message(audit_cli(run_cli, out, tiny_bert_dir, data), out)

    assert "unsupported data" in message


# --- the configuration ------------------------------------------------------------------------------------

def test_an_invalid_toml_config(run_cli: RunCli, out: Path, tmp_path: Path) -> None:
    config = tmp_path / "audit.toml"
    config.write_text('[model]\npath = "tests.models:build_tiny_cnn\n', encoding="utf-8")  # unclosed string

    message = error_message(run_cli("run", "--config", config, "--out", out, "--formats", "json", "--quiet"), out)

    assert "is not valid TOML" in message and str(config) in message


def test_a_config_with_an_unknown_key(run_cli: RunCli, out: Path, tmp_path: Path, tiny_cnn_npz: Path) -> None:
    config = tmp_path / "audit.toml"
    config.write_text(
        f'[model]\npath = "tests.models:build_tiny_cnn"\n[data]\npath = "{tiny_cnn_npz}"\nmax_sample = 5\n',
        encoding="utf-8",
    )

    message = error_message(run_cli("run", "--config", config, "--out", out, "--formats", "json", "--quiet"), out)

    assert "data.max_sample" in message and "Extra inputs are not permitted" in message


def test_a_config_file_that_does_not_exist(run_cli: RunCli, out: Path, tmp_path: Path) -> None:
    config = tmp_path / "missing.toml"
    message = error_message(run_cli("run", "--config", config, "--out", out, "--formats", "json", "--quiet"), out)

    assert "config file not found" in message


def test_an_unknown_report_format(run_cli: RunCli, out: Path, tiny_cnn_npz: Path) -> None:
    result = run_cli("run", "--model", "tests.models:build_tiny_cnn", "--data", tiny_cnn_npz, "--out", out,
                     "--formats", "json,docx", "--quiet")

    assert "--formats takes json, html, pdf" in error_message(result, out)


@pytest.mark.parametrize(("args", "cause"), [
    (["--max-samples", "0"], "Invalid value for '--max-samples'"),
    (["--batch-size", "many"], "Invalid value for '--batch-size'"),
    (["--no-such-option"], "No such option: --no-such-option"),
])
def test_a_usage_error_is_one_error_line_too(args: list[str], cause: str, run_cli: RunCli, out: Path,
                                             tiny_cnn_npz: Path) -> None:
    result = audit_cli(run_cli, out, "tests.models:build_tiny_cnn", tiny_cnn_npz, *args)

    message = error_message(result, out)
    assert cause in message and "(see 'auditor run --help')" in message
    assert "╭" not in result.stderr and "Usage:" not in result.stderr


def test_an_unknown_command_is_one_error_line(run_cli: RunCli) -> None:
    message = error_message(run_cli("audit", "--model", "x"))

    assert "No such command 'audit'" in message


# --- how the error is printed ---------------------------------------------------------------------------

def test_a_long_error_stays_on_one_line(run_cli: RunCli, out: Path, tmp_path: Path, tiny_cnn_npz: Path) -> None:
    missing = tmp_path / ("a-model-folder-with-a-long-name-" * 4)
    result = run_cli("run", "--model", missing, "--data", tiny_cnn_npz, "--out", out, "--formats", "json",
                     "--quiet", columns=80)

    assert result.exit_code == ExitCode.BAD_INPUT
    assert len(result.stderr.splitlines()) == 1, result.stderr
