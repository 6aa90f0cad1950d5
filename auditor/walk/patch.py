"""`patch`: replace a module's output or weights for the length of a `with` block, then restore exactly.

Ablation (zero or mean outputs), weight randomization (sanity checks, random-init baselines) and head
masking all build on it. The user's model is left as it was: the hook is removed and the weights are
copied back bit for bit on exit, also when the forward raises.

    with patch(model.features.conv2, output="zeros"):
        scores = model(x)
    with patch(model.fc, weights={"weight": torch.randn_like}):
        ...
    with patch(model.pool, calls=(None, "zeros"), root=model):   # only the 2nd call of each forward
        ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Union

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

OutputFn = Callable[[torch.Tensor], torch.Tensor]
Replacement = Union[Literal["zeros"], torch.Tensor, OutputFn]
"""What the module's output becomes: zeros, a constant broadcast to the output's shape (e.g. per-unit
means shaped to broadcast), or a function of the output."""
WeightValue = Union[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]


@dataclass(frozen=True)
class Patch:
    """A patch as data, for `patch_many`: what one module's output and/or weights become."""

    output: Replacement | None = None
    weights: Mapping[str, WeightValue] | None = None
    calls: tuple[Replacement | None, ...] | None = None
    """Per call of a module used more than once per forward (1st, 2nd, ...): what that call's output becomes;
    None, or a call past the tuple's end, is left as it is. Instead of `output`, which patches every call."""


def _replace(output: torch.Tensor, replacement: Replacement) -> torch.Tensor:
    if isinstance(replacement, str):
        if replacement != "zeros":
            raise ValueError(f"output replacement must be 'zeros', a tensor or a function, not {replacement!r}")
        return torch.zeros_like(output)
    if isinstance(replacement, torch.Tensor):
        # A fresh tensor every call: a following in-place op (ReLU(inplace=True)) must not rewrite the constant.
        return replacement.to(device=output.device, dtype=output.dtype).expand_as(output).clone()
    result = replacement(output)
    if not isinstance(result, torch.Tensor) or result.shape != output.shape:
        raise ValueError(f"an output patch must return a tensor of shape {tuple(output.shape)}")
    return result.clone() if result.data_ptr() == output.data_ptr() else result


def _replace_primary(output: Any, replacement: Replacement) -> Any:
    """Replaces the module's primary output (the tensor itself, or the first tensor of a tuple / ModelOutput)."""
    if isinstance(output, torch.Tensor):
        return _replace(output, replacement)
    if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
        return (_replace(output[0], replacement), *output[1:])
    if isinstance(output, MutableMapping):
        key = next(iter(output.keys()))
        if isinstance(output[key], torch.Tensor):
            output[key] = _replace(output[key], replacement)  # ModelOutput: item and attribute stay in sync
            return output
    raise TypeError(f"cannot patch an output of type {type(output).__name__}: no primary tensor")


def replace_output(output: Any, replacement: Replacement) -> Any:
    """What a module's output becomes under `patch(module, output=replacement)` (its primary tensor replaced)."""
    return _replace_primary(output, replacement)


@contextmanager
def patch(module: nn.Module, *, output: Replacement | None = None,
          weights: Mapping[str, WeightValue] | None = None, calls: tuple[Replacement | None, ...] | None = None,
          root: nn.Module | None = None) -> Iterator[None]:
    """Replaces `module`'s output and/or named parameters and buffers until the block ends.

    Args:
        module: the module to patch.
        output: its output becomes zeros, a constant broadcast to the output's shape, or `fn(output)`, at every
            call (a module called several times per forward is patched at each).
        weights: `{parameter or buffer name: tensor or fn(old) -> tensor}`, names relative to `module`
            (e.g. `"weight"`, `"0.bias"`).
        calls: instead of `output`, per call within one forward: `calls[k - 1]` replaces the k-th call's output
            (None: that call is left alone), for a module used more than once per forward.
        root: with `calls`, the model whose forward the calls are counted in (the count restarts at each of its
            calls).
    """
    if calls is not None and (output is not None or root is None):
        raise ValueError("a per-call patch takes `calls` instead of `output`, and the `root` whose forward counts them")
    saved: list[tuple[torch.Tensor, torch.Tensor]] = []
    handles = []
    try:
        if weights:
            tensors = dict(module.named_parameters()) | dict(module.named_buffers())
            for key, value in weights.items():
                if key not in tensors:
                    raise KeyError(f"{type(module).__name__} has no parameter or buffer {key!r}")
                target = tensors[key]
                with torch.no_grad():
                    new = value(target.detach()) if callable(value) else value
                    if new.shape != target.shape:
                        raise ValueError(f"patched {key} has shape {tuple(new.shape)}; expected {tuple(target.shape)}")
                    saved.append((target, target.detach().clone()))
                    target.copy_(new)
        if output is not None:
            replacement = output
            # prepend: hooks registered earlier (a Recorder) must see the patched output, as the model does
            handles.append(module.register_forward_hook(lambda _m, _a, out: _replace_primary(out, replacement),
                                                        prepend=True))
        if calls is not None and root is not None:
            handles += _per_call(module, calls, root)
        yield
    finally:
        while handles:
            handles.pop().remove()
        with torch.no_grad():
            for target, original in reversed(saved):
                target.copy_(original)


def _per_call(module: nn.Module, calls: tuple[Replacement | None, ...], root: nn.Module) -> list[RemovableHandle]:
    """Hooks that replace the output of chosen calls of `module`, counted from the start of each call of `root`."""
    count = [0]

    def restart(_m: nn.Module, _a: Any) -> None:
        count[0] = 0

    def replace(_m: nn.Module, _a: Any, out: Any) -> Any:
        count[0] += 1
        replacement = calls[count[0] - 1] if count[0] <= len(calls) else None
        return None if replacement is None else _replace_primary(out, replacement)

    handles = [root.register_forward_pre_hook(restart)]
    try:
        handles.append(module.register_forward_hook(replace, prepend=True))
    except BaseException:
        handles.pop().remove()
        raise
    return handles


@contextmanager
def patch_stacked(module: nn.Module, outputs: Sequence[Replacement]) -> Iterator[None]:
    """For a forward over K copies of a batch stacked along the batch dimension (K = `len(outputs)`): the k-th
    copy's slice of `module`'s primary output becomes `outputs[k]`, each as `patch(module, output=...)` would
    make it; several patches share one forward. Removed on exit, also when the forward raises."""
    stacked = list(outputs)

    def replace(_m: nn.Module, _a: Any, out: Any) -> Any:
        primary = next(t for t in _primaries(out))
        if primary.shape[0] % len(stacked):
            raise ValueError(f"a stacked patch of {len(stacked)} copies got a batch of {primary.shape[0]}")
        parts = primary.chunk(len(stacked))
        return _with_primary(out, torch.cat([_replace(p, r) for p, r in zip(parts, stacked, strict=True)]))

    handle = module.register_forward_hook(replace, prepend=True)
    try:
        yield
    finally:
        handle.remove()


def _primaries(output: Any) -> Iterator[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        yield output
    elif isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
        yield output[0]
    elif isinstance(output, MutableMapping) and isinstance(output[next(iter(output.keys()))], torch.Tensor):
        yield output[next(iter(output.keys()))]
    else:
        raise TypeError(f"cannot patch an output of type {type(output).__name__}: no primary tensor")


def _with_primary(output: Any, primary: torch.Tensor) -> Any:
    if isinstance(output, torch.Tensor):
        return primary
    if isinstance(output, tuple):
        return (primary, *output[1:])
    output[next(iter(output.keys()))] = primary
    return output


@contextmanager
def patch_many(model: nn.Module, patches: Mapping[str, Patch]) -> Iterator[None]:
    """Applies several patches at once, by module name; all are undone on exit, in reverse order."""
    with ExitStack() as stack:
        for name, spec in patches.items():
            stack.enter_context(patch(model.get_submodule(name), output=spec.output, weights=spec.weights,
                                      calls=spec.calls, root=model if spec.calls is not None else None))
        yield
