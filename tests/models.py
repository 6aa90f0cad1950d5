"""Tiny fixed models used across the test suite: small enough to reason about, built without downloads.

Every factory seeds its own initialisation (without touching the global RNG), so the same factory always
returns the same weights: `tests.models:build_tiny_cnn` is a valid `--model` for `auditor run`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor, nn

M = TypeVar("M", bound=nn.Module)


def portable_randn(*shape: int, generator: torch.Generator) -> Tensor:
    """Standard normal samples that are bit-identical on every CPU.

    torch's float32 normal sampler takes a vectorized path on AVX2/AVX-512 machines and a scalar one
    elsewhere (ATEN_CPU_CAPABILITY=default, ARM), and their last bits differ; its float64 sampler does
    not. Test data drawn here, then rounded to float32, is the same everywhere: content hashes (the probes'
    folds) and near-boundary samples stay put.
    """
    return torch.randn(*shape, generator=generator, dtype=torch.float64).float()


def _seeded(build: Callable[[], M], seed: int = 0) -> M:
    """Builds a module with a fixed seed, leaving the caller's random state untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


class TinyCNN(nn.Module):
    """1×8×8 images → conv(1→4) → in-place ReLU → maxpool → linear → 3 class logits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, kernel_size=3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.flatten(self.pool(self.relu(self.conv(x)))))


class TwiceUsed(nn.Module):
    """One nn.Linear applied twice per forward (a reused module), then a 3-class head; input (batch, 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Linear(4, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.shared(torch.relu(self.shared(x))))


class DictOutput(nn.Module):
    """A TinyCNN whose forward returns `{"logits": ..., "aux": ...}`, like many research models."""

    def __init__(self) -> None:
        super().__init__()
        self.body = TinyCNN()

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        logits = self.body(x)
        return {"logits": logits, "aux": logits.mean(dim=1)}


class DictNoLogits(nn.Module):
    """A TinyCNN whose forward returns `{"a": ..., "b": ...}`: two tensors and no `logits` to pick."""

    def __init__(self) -> None:
        super().__init__()
        self.body = TinyCNN()

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        logits = self.body(x)
        return {"a": logits, "b": logits * 2}


class TutorialNet(nn.Module):
    """The PyTorch tutorial CNN for 3×32×32 images: conv 3→6, pool, conv 6→16, the *same* `self.pool` again
    (6 channels at its first call, 16 at its second), three linear layers, 10 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


def build_tutorial_net() -> TutorialNet:
    return _seeded(TutorialNet)


def build_tiny_cnn() -> TinyCNN:
    return _seeded(TinyCNN)


def build_twice_used() -> TwiceUsed:
    return _seeded(TwiceUsed)


def build_dict_output() -> DictOutput:
    return _seeded(DictOutput)


def build_dict_no_logits() -> DictNoLogits:
    return _seeded(DictNoLogits)


class WrappedTinyCNN(nn.Module):
    """A TinyCNN held in an attribute called `model`: its own keys start with `model.`."""

    def __init__(self) -> None:
        super().__init__()
        self.model = TinyCNN()

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def build_wrapped_tiny_cnn() -> WrappedTinyCNN:
    return _seeded(WrappedTinyCNN)


def build_not_a_module() -> dict[str, int]:
    """A factory that forgets to return a module."""
    return {"layers": 2}


class LambdaLayer(nn.Module):
    """A parameter-free module around a function, as CIFAR ResNets wrap their option-A shortcut."""

    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)


class CifarBlock(nn.Module):
    """The BasicBlock of the widely published CIFAR ResNets: functional ReLUs and, where the width
    doubles, an option-A shortcut that subsamples and zero-pads half of its output channels."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or in_planes != planes:
            pad = planes // 4
            self.shortcut = LambdaLayer(
                lambda x: nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, pad, pad), "constant", 0.0))

    def forward(self, x: Tensor) -> Tensor:
        out = nn.functional.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return nn.functional.relu(out)


class CifarResNet(nn.Module):
    """A CIFAR-style ResNet-8 (one block per stage, widths 16/32/64 by default, option-A shortcuts) on 3×32×32
    images (any size: the head pools), 10 classes by default."""

    def __init__(self, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        w = width
        self.conv1 = nn.Conv2d(3, w, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.layer1 = nn.Sequential(CifarBlock(w, w))
        self.layer2 = nn.Sequential(CifarBlock(w, 2 * w, stride=2))
        self.layer3 = nn.Sequential(CifarBlock(2 * w, 4 * w, stride=2))
        self.linear = nn.Linear(4 * w, classes)

    def forward(self, x: Tensor) -> Tensor:
        out = nn.functional.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = nn.functional.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def build_cifar_resnet() -> CifarResNet:
    return _seeded(CifarResNet)


# --- residual blocks as published: the activation after the join -----------------------------------------
# (akamaster's CIFAR ResNets, torchvision's BasicBlock and Bottleneck, and the functional one-liner of many
# CIFAR repositories; written here, without torchvision)

class TorchvisionBasic(nn.Module):
    """torchvision's BasicBlock: one `nn.ReLU(inplace=True)` after bn1 and again after `out += identity`;
    where the width or stride changes, `downsample = Sequential(conv1x1, bn)`."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class TorchvisionBottleneck(nn.Module):
    """torchvision's Bottleneck: 1×1, 3×3, 1×1 (×4 channels), the ReLU module used three times."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != out_planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_planes))

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class FunctionalBlock(nn.Module):
    """`F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))`: out-of-place sum, functional ReLU; the
    shortcut an empty Sequential, or conv1x1 + bn where the width changes."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(planes))

    def forward(self, x: Tensor) -> Tensor:
        out = nn.functional.relu(self.bn1(self.conv1(x)))
        return nn.functional.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class TwoStageResNet(nn.Module):
    """stem (3→8) → stage 1: two blocks of width 8 → stage 2: a block doubling the width at stride 2, and
    one more → global average → 4 classes, on 3×8×8 images. As in a trained network, each BatchNorm
    normalises (its statistics are those of a batch of noise) and then scales and shifts by random
    amounts (a fresh BatchNorm is nearly the identity); the head reads the pooled features standardised
    on that batch, so that noise images spread over the classes."""

    def __init__(self, block: Callable[..., nn.Module], *, expansion: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.layer1 = nn.Sequential(block(8, 8 // expansion), block(8, 8 // expansion))
        self.layer2 = nn.Sequential(block(8, 16 // expansion, stride=2), block(16, 16 // expansion))
        self.fc = nn.Linear(16, 4)
        self._head = (self.fc.weight.detach().clone(), self.fc.bias.detach().clone())
        norms = [m for m in self.modules() if isinstance(m, nn.BatchNorm2d)]
        with torch.no_grad():
            for norm in norms:
                norm.momentum = None  # a cumulative average: one batch's statistics
            noise = torch.randn(64, 3, 8, 8)
            self.train()(noise)
            for norm in norms:
                norm.weight.normal_(1.0, 0.3)
                norm.bias.normal_(0.0, 0.3)
        self.eval()
        self.standardise_head(noise)

    def standardise_head(self, x: Tensor) -> None:
        """Rescales the head so that it reads the pooled features of `x` standardised (after editing a layer)."""
        weight, bias = self._head
        with torch.no_grad():
            pooled = self.features(x)
            scale = weight / pooled.std(dim=0)
            self.fc.weight.copy_(scale)
            self.fc.bias.copy_(bias - scale @ pooled.mean(dim=0))

    def features(self, x: Tensor) -> Tensor:
        out = nn.functional.relu(self.bn1(self.conv1(x)))
        out = self.layer2(self.layer1(out))
        return nn.functional.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


RESNET_BLOCKS: dict[str, tuple[Callable[..., nn.Module], int]] = {
    "akamaster": (CifarBlock, 1), "torchvision_basic": (TorchvisionBasic, 1),
    "torchvision_bottleneck": (TorchvisionBottleneck, 4), "functional": (FunctionalBlock, 1),
}
"""Variant name -> (block class, channel expansion): the four ways published ResNets write their blocks."""


def build_two_stage_resnet(variant: str, seed: int = 0) -> TwoStageResNet:
    block, expansion = RESNET_BLOCKS[variant]
    return _seeded(lambda: TwoStageResNet(block, expansion=expansion), seed)


# --- generators and their judges, with answers known by construction ------------------------------------

def templates() -> Tensor:
    """Three 4×4 'digits': five lit pixels each, on disjoint pixels (rows of a (3, 16) tensor)."""
    t = torch.zeros(3, 16)
    for k in range(3):
        t[k, k * 5:k * 5 + 5] = 1.0
    return t


class TemplateClassifier(nn.Module):
    """Nearest template: logits 2 x·t_k − |t_k|² (= −|x − t_k|² up to a shift common to all classes).
    Its penultimate features are the flattened image (the input of its one linear layer)."""

    class_names = ["zero", "one", "two"]

    def __init__(self) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16, 3)
        with torch.no_grad():
            t = templates()
            self.fc.weight.copy_(2 * t)
            self.fc.bias.copy_(-(t * t).sum(dim=1))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.flatten(x))


class TemplateDiscriminator(nn.Module):
    """Realness logit 3 − 4 · (squared distance to the nearest template): a template is real (0.95), the
    average of the three templates is not (~0)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("t", templates())
        self.scale = nn.Parameter(torch.tensor(4.0))

    def forward(self, x: Tensor) -> Tensor:
        distance = torch.cdist(x.flatten(1), self.t).pow(2).min(dim=1).values
        return 3.0 - self.scale * distance


class Residual(nn.Module):
    def __init__(self, width: int, gain: float) -> None:
        super().__init__()
        self.branch = nn.Linear(width, width)
        with torch.no_grad():
            self.branch.weight.copy_(gain * torch.eye(width))
            self.branch.bias.zero_()

    def forward(self, h: Tensor) -> Tensor:
        return h + self.branch(h)


class Paint(nn.Module):
    """h (batch, 3) -> (batch, 1, 4, 4): the templates mixed by softmax(4 h), nearly one template per sample."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("t", templates())

    def forward(self, h: Tensor) -> Tensor:
        return (torch.softmax(4 * h, dim=1) @ self.t).reshape(-1, 1, 4, 4)


class ToyGenerator(nn.Module):
    """Noise (batch, 4) -> one of three templates. `first` spreads the noise (ablated by its mean, every sample
    becomes the blurred average of the templates: realness collapses); `blocks.0` adds a little to the
    stream; `blocks.1` is an identity: its branch has zero weights, so ablating it can move nothing."""

    noise_dim = 4

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(4, 3)
        with torch.no_grad():
            self.first.weight.copy_(3 * torch.eye(3, 4))
            self.first.bias.zero_()
        self.blocks = nn.Sequential(Residual(3, 0.1), Residual(3, 0.0))
        self.paint = Paint()

    def forward(self, z: Tensor) -> Tensor:
        return self.paint(self.blocks(self.first(z)))


class Painter(nn.Module):
    """Adds, to the samples asked to be class k, the stroke that turns template 0 into template k."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k
        t = templates()
        self.stroke = nn.Parameter(t[k] - t[0])

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        return (y == self.k).float().unsqueeze(1) * self.stroke * (1 + 0.05 * z[:, :1])


class PainterGenerator(nn.Module):
    """Conditional: (noise (batch, 4), class (batch,)) -> template 0 plus, for class k > 0, painter k-1's stroke.
    Ablating `painters.0` (mean) leaves class-1 samples a third of their stroke: they become class 0, and
    class 1 vanishes from the classifier's histogram while class 2 is untouched."""

    noise_dim = 4
    n_classes = 3

    def __init__(self) -> None:
        super().__init__()
        self.base = nn.Linear(4, 16)
        with torch.no_grad():
            self.base.weight.mul_(0.02)
            self.base.bias.copy_(templates()[0])
        self.painters = nn.ModuleList([Painter(1), Painter(2)])

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        x = self.base(z)
        for painter in self.painters:
            x = x + painter(z, y)
        return x.reshape(-1, 1, 4, 4)


def build_toy_generator() -> ToyGenerator:
    return _seeded(ToyGenerator)


def build_painter_generator() -> PainterGenerator:
    return _seeded(PainterGenerator)


def build_template_discriminator() -> TemplateDiscriminator:
    return TemplateDiscriminator()


def build_template_classifier() -> TemplateClassifier:
    return TemplateClassifier()


class SharedAcrossWidths(nn.Module):
    """One ReLU shared by two layers of different widths: lin1 (4→3), act, lin2 (3→5), act again, head (5→2).

    By construction lin1's units are always positive (act@1 has no dead unit) and lin2's units 0 and 1 are
    always -1 (act@2 kills exactly those two)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin1 = nn.Linear(4, 3)
        self.act = nn.ReLU()
        self.lin2 = nn.Linear(3, 5)
        self.head = nn.Linear(5, 2)
        with torch.no_grad():
            self.lin1.weight.mul_(0.1)
            self.lin1.bias.fill_(5.0)
            self.lin2.weight[:2] = 0.0
            self.lin2.bias[:2] = -1.0
            self.lin2.weight[2:].abs_()  # the other three see positive inputs: always alive
            self.lin2.bias[2:].abs_()

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.act(self.lin2(self.act(self.lin1(x)))))


def build_shared_across_widths() -> SharedAcrossWidths:
    return _seeded(SharedAcrossWidths)


class Bag(nn.Module):
    """Text: the logits are the sum of the tokens' 2-d embeddings; the embedding table is set by hand."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.embeddings = nn.Embedding(vocab, 2)
        self.head = nn.Linear(2, 2)
        with torch.no_grad():
            self.embeddings.weight.zero_()
            self.head.weight.copy_(torch.eye(2))
            self.head.bias.zero_()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        e = self.embeddings(input_ids)
        if attention_mask is not None:
            e = e * attention_mask[..., None]
        return self.head(e.sum(dim=1))
