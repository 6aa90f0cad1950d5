"""Loading a model: a Hugging Face directory, a factory `package.module:function` plus weights, or —
only with `trust_pickle` — a fully pickled module. Every failure is a one-line ModelLoadError."""

from __future__ import annotations

import hashlib
import importlib
import json
import pickle
import re
import sys
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from auditor.config import ModelSpec
from auditor.errors import ModelLoadError
from auditor.schema.report import WeightsLoading
from auditor.subject.heads import EncoderClassifier, load_linear_head

ModelKind = Literal["hf_text", "hf_image", "hf_encoder", "module"]
_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_DEFAULT_LABEL = re.compile(r"^LABEL_\d+$")


@dataclass
class LoadedModel:
    """A model ready to audit, with what is needed to feed it and to name it in the report."""

    module: nn.Module
    kind: ModelKind
    name: str
    source: str
    weights_sha256: str | None = None
    tokenizer: Any = None
    image_processor: Any = None
    class_names: list[str] = field(default_factory=list)
    has_head: bool = True
    """False for a bare encoder without `head`: the audit targets its pooled hidden state."""
    generates: bool = False
    """A generator (noise -> sample): its scores are its samples, flattened, and judges score them."""
    weights_loading: WeightsLoading | None = None
    """What loading the weights file took beyond a plain strict load (None: nothing)."""
    causal_lm: bool = False
    """A causal language model (`AutoModelForCausalLM`, or a factory returning one): its task is next-token
    prediction on the audit texts."""


_CAUSAL_LM = re.compile(r"(ForCausalLM|LMHeadModel)$")


def is_causal_lm(module: nn.Module) -> bool:
    """A Hugging Face causal language model, by its class (`GPT2LMHeadModel`, `LlamaForCausalLM`, ...)."""
    return bool(_CAUSAL_LM.search(type(module).__name__)) and hasattr(module, "get_output_embeddings")


def sha256_files(paths: list[Path]) -> str | None:
    """One digest over the files' bytes, in the given order (None when there are none)."""
    if not paths:
        return None
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def model_title(module: nn.Module) -> str:
    """The name a report gives a model unless --name says otherwise: its class, not the factory function
    or the folder it came from (those are its source)."""
    if isinstance(module, EncoderClassifier):
        return f"{type(module.encoder).__name__} with a linear head"
    return type(module).__name__


def load_model(spec: ModelSpec) -> LoadedModel:
    """Loads the model that `spec` names, in eval mode on the CPU."""
    if not spec.path:
        raise ModelLoadError("no model given: pass --model PATH_OR_FACTORY (or [model] path in the config)")
    path = Path(spec.path)
    if path.is_dir():
        loaded = _load_hf_dir(path, spec)
    elif path.is_file():
        loaded = _load_pickled_module(path, trust=spec.trust_pickle)
    elif _FACTORY.match(spec.path):
        loaded = _load_factory(spec)
    else:
        raise ModelLoadError(
            f"model not found: {spec.path!r} is neither an existing path nor a factory 'package.module:function'"
        )
    if spec.name:
        loaded.name = spec.name
    loaded.module.eval()
    return loaded


# --- Hugging Face directories ------------------------------------------------------------------------

def _load_hf_dir(path: Path, spec: ModelSpec) -> LoadedModel:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"{path} is a directory without config.json: not a Hugging Face model directory")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"{config_file} is not valid JSON: {err}") from None
    weight_files = sorted(path.glob("*.safetensors")) or sorted(path.glob("pytorch_model*.bin"))
    if not weight_files:
        raise ModelLoadError(f"{path} holds no weights (*.safetensors or pytorch_model*.bin)")
    architectures = " ".join(config.get("architectures") or [])
    causal = bool(re.search(r"(ForCausalLM|LMHeadModel)\b", architectures))
    auto, kind = _auto_class(architectures, causal=causal)
    try:
        with _no_hf_progress_bars():
            module = auto.from_pretrained(str(path), local_files_only=True)
    except Exception as err:  # transformers raises OSError, ValueError, SafetensorError, ...
        raise ModelLoadError(f"could not load the model in {path}: {_one_line(err)}") from None
    tokenizer, image_processor = _preprocessors(path)
    if kind == "hf_encoder":
        kind = "hf_image" if image_processor is not None and tokenizer is None else "hf_text"
        is_bare = True
    else:
        is_bare = False
    id2label = getattr(module.config, "id2label", None) or {}
    class_names = [str(id2label[i]) for i in sorted(id2label)] if id2label else []
    if all(_DEFAULT_LABEL.match(n) for n in class_names):
        class_names = []
    hashed = list(weight_files)
    has_head = True
    if is_bare:
        if spec.head:
            hidden = int(getattr(module.config, "hidden_size", 0) or 0)
            head, pooling, labels = load_linear_head(spec.head, hidden_size=hidden)
            module = EncoderClassifier(module, head, pooling=pooling, class_names=labels)
            class_names = labels
            hashed.append(Path(spec.head))
        else:
            has_head = False
            class_names = []
    elif spec.head:
        raise ModelLoadError(f"--head applies to a bare encoder; {path} already has a classification head")
    if causal:
        class_names = []
        module.config.use_cache = False  # a key-value cache is for generation; the audit scores whole texts
        if tokenizer is not None and getattr(tokenizer, "pad_token_id", None) is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token  # GPT-2 has none; padding is masked
    return LoadedModel(
        module=module, kind=kind, name=model_title(module), source=str(path), weights_sha256=sha256_files(hashed),
        tokenizer=tokenizer, image_processor=image_processor, class_names=class_names, has_head=has_head,
        causal_lm=causal,
    )

def _preprocessors(path: Path) -> tuple[Any, Any]:
    """The tokenizer and the image processor a Hugging Face directory holds (None where it holds none)."""
    import transformers

    tokenizer = image_processor = None
    if (path / "preprocessor_config.json").is_file():
        try:
            image_processor = (
                transformers.AutoImageProcessor.from_pretrained(  # type: ignore[no-untyped-call,unused-ignore]  # unannotated in HF
                    str(path), local_files_only=True))
        except Exception as err:
            raise ModelLoadError(f"could not load the image processor in {path}: {_one_line(err)}") from None
    if any((path / f).is_file() for f in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")):
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except Exception as err:
            raise ModelLoadError(f"could not load the tokenizer in {path}: {_one_line(err)}") from None
    return tokenizer, image_processor

def _auto_class(architectures: str, *, causal: bool) -> tuple[Any, ModelKind]:
    """The transformers Auto class that loads a directory of these architectures, and the kind of model it is
    ("hf_encoder": a bare encoder, told apart as text or image by its preprocessors later)."""
    import transformers

    if causal:
        return transformers.AutoModelForCausalLM, "hf_text"
    if "ForSequenceClassification" in architectures:
        return transformers.AutoModelForSequenceClassification, "hf_text"
    if "ForImageClassification" in architectures:
        return transformers.AutoModelForImageClassification, "hf_image"
    return transformers.AutoModel, "hf_encoder"




@contextmanager
def _no_hf_progress_bars() -> Iterator[None]:
    """transformers 5 draws a 'Loading weights' bar on stderr; auditor reports its own progress (or none)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # unannotated in transformers
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]  # unannotated in transformers


# --- factories and weight files ------------------------------------------------------------------------

def _load_factory(spec: ModelSpec) -> LoadedModel:
    assert spec.path is not None
    module_name, _, attr = spec.path.partition(":")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # a factory in the user's project, as `python -m` would find it
    try:
        py_module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise ModelLoadError(f"factory module {module_name!r} not found ({err})") from None
    except Exception as err:
        raise ModelLoadError(f"importing factory module {module_name!r} failed: {_one_line(err)}") from None
    factory: Any = py_module
    for part in attr.split("."):
        if not hasattr(factory, part):
            raise ModelLoadError(f"factory {spec.path!r} not found: module {module_name!r} has no {attr!r}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise ModelLoadError(f"factory {spec.path!r} is not callable")
    try:
        module = factory()
    except Exception as err:
        raise ModelLoadError(f"factory {spec.path!r} raised {_one_line(err)}") from None
    if not isinstance(module, nn.Module):
        raise ModelLoadError(f"factory {spec.path!r} returned {type(module).__name__}, not a torch.nn.Module")
    sha = loading = None
    if spec.weights:
        weights = Path(spec.weights)
        loading = load_weights(module, weights, trust_pickle=spec.trust_pickle)
        sha = sha256_files([weights])
    class_names = [str(c) for c in getattr(module, "class_names", None) or []]
    causal = is_causal_lm(module)
    tokenizer = getattr(module, "tokenizer", None) if causal else None  # a factory's LM may carry its tokenizer
    if tokenizer is not None and getattr(tokenizer, "pad_token_id", None) is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return LoadedModel(module=module, kind="hf_text" if causal else "module", name=model_title(module),
                       source=spec.path, weights_sha256=sha, class_names=[] if causal else class_names,
                       weights_loading=None if loading == WeightsLoading() else loading, tokenizer=tokenizer,
                       causal_lm=causal)


_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
"""Entries under which training scripts save the state_dict inside a checkpoint dict."""
_KEY_PREFIXES = ("module.", "_orig_mod.", "model.")
"""Prefixes that wrappers put on every key: nn.DataParallel / DDP, torch.compile, Lightning."""


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def read_state_dict(path: Path, *, trust_pickle: bool) -> tuple[dict[str, torch.Tensor], WeightsLoading]:
    """A state_dict from .safetensors, or from a torch file read with weights_only=True.

    A checkpoint dict (`{"state_dict": ..., "epoch": ...}`) gives its state_dict; what else it held is
    recorded, not used.
    """
    if not path.is_file():
        raise ModelLoadError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path)), WeightsLoading()
        except Exception as err:  # SafetensorError, or OSError on a truncated header
            raise ModelLoadError(f"{path} is not a valid safetensors file (corrupt or truncated?): "
                                 f"{_one_line(err)}") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not trust_pickle:
            raise ModelLoadError(
                f"{path} holds more than tensors (a pickled object) and was not unpickled: unpickling runs "
                "arbitrary code. Save a state_dict or safetensors instead, or pass --trust-pickle if you "
                f"trust this file ({_one_line(err)[:160]})"
            ) from None
        obj = _unpickle(path)
    except Exception as err:
        raise ModelLoadError(f"{path} is not a readable torch weights file: {_one_line(err)}") from None
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    loading = WeightsLoading()
    if isinstance(obj, dict) and not _is_state_dict(obj):
        key = next((k for k in _WRAPPER_KEYS if _is_state_dict(obj.get(k))), None)
        if key is not None:
            loading = WeightsLoading(wrapper_key=key, wrapper_other_keys=[str(k) for k in obj if k != key])
            obj = obj[key]
    if not _is_state_dict(obj):
        raise ModelLoadError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    return obj, loading


def strip_key_prefix(state: dict[str, torch.Tensor], model_keys: list[str]) -> tuple[dict[str, torch.Tensor], str]:
    """Removes wrapper prefixes ('module.', '_orig_mod.', 'model.', nested too) that every key of
    `state` carries and no key of the model does; returns the state and what was removed ("" for none)."""
    removed = ""
    while True:
        prefix = next((p for p in _KEY_PREFIXES if all(k.startswith(p) for k in state)
                       and not any(k.startswith(p) for k in model_keys)), None)
        if prefix is None:
            return state, removed
        stripped: dict[str, torch.Tensor] = OrderedDict((k[len(prefix):], v) for k, v in state.items())
        metadata = getattr(state, "_metadata", None)
        if metadata is not None:  # module versions, keyed by module path: BatchNorm reads its own
            name = prefix[:-1]
            stripped._metadata = OrderedDict(  # type: ignore[attr-defined]  # torch's convention
                (k[len(prefix):] if k.startswith(prefix) else "" if k == name else k, v) for k, v in metadata.items())
        state, removed = stripped, removed + prefix


def load_weights(module: nn.Module, path: Path, *, trust_pickle: bool) -> WeightsLoading:
    """Loads a state_dict into `module` with torch's strict load_state_dict; says what it had to adjust.

    Torch decides what fits (a state dict from before BatchNorm counted its batches loads, as it does
    in torch); its refusal becomes one line naming the keys.
    """
    state, loading = read_state_dict(path, trust_pickle=trust_pickle)
    expected = module.state_dict()
    state, prefix = strip_key_prefix(state, list(expected))
    try:
        module.load_state_dict(state, strict=True)
    except Exception as err:  # RuntimeError, or whatever a custom _load_from_state_dict raises
        stripped = f" (after removing the prefix {prefix!r} from every key)" if prefix else ""
        raise ModelLoadError(f"weights {path} do not match the model{stripped}: "
                             f"{_explain_mismatch(module, state, err)}") from None
    return loading.model_copy(update={"stripped_prefix": prefix or None,
                                      "filled_keys": [k for k in expected if k not in state]})


def _explain_mismatch(module: nn.Module, state: dict[str, torch.Tensor], err: Exception) -> str:
    """Why torch refused `state`: missing and unexpected keys (as torch counts them) and shape mismatches."""
    expected = module.state_dict()
    wrong_shape = [k for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    fitting: dict[str, torch.Tensor] = OrderedDict((k, v) for k, v in state.items() if k not in wrong_shape)
    if hasattr(state, "_metadata"):
        fitting._metadata = state._metadata  # type: ignore[attr-defined]  # torch's convention
    try:  # a dry run without the wrong shapes: torch lists the keys, after filling what it fills
        result = module.load_state_dict(fitting, strict=False)
    except Exception:
        return _one_line(err)
    missing = [k for k in result.missing_keys if k not in wrong_shape]
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} key(s) e.g. {missing[:3]}")
    if result.unexpected_keys:
        parts.append(f"unexpected {len(result.unexpected_keys)} key(s) e.g. {result.unexpected_keys[:3]}")
    if wrong_shape:
        shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in wrong_shape]
        parts.append(f"{len(shapes)} shape mismatch(es) e.g. {shapes[:2]}")
    return "; ".join(parts) or _one_line(err)


def _unpickle(path: Path) -> Any:
    try:
        return torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as err:
        raise ModelLoadError(f"could not unpickle {path}: {_one_line(err)}") from None


def _load_pickled_module(path: Path, *, trust: bool) -> LoadedModel:
    """A model file given directly: a whole pickled nn.Module, loadable only with --trust-pickle."""
    if path.suffix == ".safetensors":
        raise ModelLoadError(
            f"{path} holds weights only: pass a factory as --model and this file as --weights"
        )
    if not trust:
        raise ModelLoadError(
            f"{path} is a model file; loading a whole pickled model runs arbitrary code, so it needs "
            "--trust-pickle. Safer: a factory 'package.module:function' with --weights (safetensors)"
        )
    module = _unpickle(path)
    if not isinstance(module, nn.Module):
        raise ModelLoadError(f"{path} unpickled to {type(module).__name__}, not a torch.nn.Module")
    class_names = [str(c) for c in getattr(module, "class_names", None) or []]
    return LoadedModel(module=module, kind="module", name=model_title(module), source=str(path),
                       weights_sha256=sha256_files([path]), class_names=class_names)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {text[:300]}"
