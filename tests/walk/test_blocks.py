"""Blocks: the modules a reader would call layers, found once for every analysis."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from auditor.demo.digits import DigitsCNN
from auditor.subject.loading import load_model
from auditor.config import ModelSpec
from auditor.walk.blocks import find_blocks
from auditor.walk.tree import ModuleTree
from tests.models import TinyCNN


def _blocks(model: nn.Module, **kw: bool) -> dict[str, str]:
    return {b.name: b.kind for b in find_blocks(ModuleTree(model), **kw)}


def test_a_transformer_has_embeddings_layers_and_a_head(tiny_bert_dir: Path) -> None:
    model = load_model(ModelSpec(path=str(tiny_bert_dir))).module
    assert _blocks(model) == {"bert.embeddings": "embeddings", "bert.encoder.layer.0": "layer",
                              "bert.encoder.layer.1": "layer", "classifier": "head"}
    groups = {b.group for b in find_blocks(ModuleTree(model)) if b.kind == "layer"}
    assert groups == {"bert.encoder.layer"}


def test_a_bare_encoder_has_no_head(tiny_encoder_dir: Path) -> None:
    model = load_model(ModelSpec(path=str(tiny_encoder_dir))).module
    assert _blocks(model, has_head=False) == {"embeddings": "embeddings", "encoder.layer.0": "layer",
                                              "encoder.layer.1": "layer"}


def test_a_plain_stack_gives_its_children_without_pass_throughs() -> None:
    blocks = _blocks(DigitsCNN())
    assert list(blocks) == ["features.conv1", "features.bn1", "features.relu1", "features.pool1",
                            "features.conv2", "features.bn2", "features.relu2", "features.pool2",
                            "features.conv3", "features.relu3", "features.gap", "classifier.fc"]
    assert blocks["classifier.fc"] == "head"
    assert _blocks(TinyCNN()) == {"conv": "stage", "relu": "stage", "pool": "stage", "fc": "head"}


class Residual(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())

    def forward(self, x):  # type: ignore[no-untyped-def]
        return x + self.branch(x)


class SmallResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.layer1 = nn.Sequential(Residual(8), Residual(8))
        self.layer2 = nn.Sequential(Residual(8), Residual(8), Residual(8))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.fc(self.pool(self.layer2(self.layer1(self.stem(x)))).flatten(1))


def test_residual_stages_give_their_blocks_and_nothing_inside_them() -> None:
    blocks = _blocks(SmallResNet())
    assert blocks == {"stem": "stage", "layer1.0": "layer", "layer1.1": "layer", "layer2.0": "layer",
                      "layer2.1": "layer", "layer2.2": "layer", "fc": "head"}
