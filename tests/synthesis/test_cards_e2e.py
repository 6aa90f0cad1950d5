"""The module atlas on models whose roles are known by construction, audited for real (fast analyses only)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import auditor
from auditor.config import AuditConfig
from auditor.report.io import load_report
from auditor.schema.report import AuditReport
from auditor.synthesis import synthesize
from tests.models import portable_randn

FAST = ["inventory", "gradients", "ablation", "probes"]


def _linear(weight: list[list[float]], bias: list[float]) -> nn.Linear:
    layer = nn.Linear(len(weight[0]), len(weight))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        layer.bias.copy_(torch.tensor(bias))
    return layer


class Roles(nn.Module):
    """`stem` and `head` are the path every sample takes (their mean gives every sample the logits of class 2);
    `a` carries class 0 and `b` class 1 (a branch that carries one class); `decoy` is multiplied by zero (the
    decision never uses it); `dead` is a ReLU whose input is always negative (every unit dead), added with
    weight zero."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = _linear([[1, 0, 0], [0, 1, 0], [0, 0, 1]], [0, 0, 0])
        self.a = _linear([[3, 0, 0], [0, 0, 0], [0, 0, 0]], [0, 0, 0])
        self.b = _linear([[0, 0, 0], [0, 3, 0], [0, 0, 0]], [0, 0, 0])
        self.decoy = _linear([[1, 1, 1], [1, 1, 1], [1, 1, 1]], [0, 0, 0])
        self.dead = nn.Sequential(_linear([[0, 0, 0]] * 4, [-10.0] * 4), nn.ReLU())
        self.head = _linear([[1, 0, 0], [0, 1, 0], [0, 0, 1]], [0, 0, 1.5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        return self.head(self.a(s) + self.b(s) + 0.0 * self.decoy(s)) + 0.0 * self.dead(s).sum(dim=1, keepdim=True)


def _onehot(n: int = 150) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 3
    return nn.functional.one_hot(y, 3).float() + 0.05 * portable_randn(n, 3, generator=g), y


def _audit(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], **options: object) -> AuditReport:
    config = AuditConfig.model_validate({"analyses": {"ablation": {"unit_layers": "none"}}})
    return auditor.audit(model.eval(), data, config=config, batch_size=50, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def roles_report() -> AuditReport:
    return _audit(Roles(), _onehot(), analyses=FAST)


def test_the_cards_state_the_roles_built_into_the_model(roles_report: AuditReport) -> None:
    cards = {c.module: c for c in roles_report.cards}
    assert {"stem", "a", "b", "decoy", "head"} <= set(cards)
    assert "main path" in cards["stem"].tags and "main path" in cards["head"].tags
    assert "class-specific: 0" in cards["a"].tags and "class-specific: 1" in cards["b"].tags
    assert "main path" not in cards["a"].tags and "class-specific: 1" not in cards["a"].tags
    assert {"unused by the decision", "redundant"} <= set(cards["decoy"].tags)
    dead = [c for name, c in cards.items() if name.startswith("dead")]
    assert any("dead units" in c.tags for c in dead)
    a = cards["a"]
    assert "takes 100.0 points off the recall of class '0'" in a.statement
    assert any(e.section == "ablation" and e.key == "ablation_drop/0" and e.value == pytest.approx(1.0)
               for e in a.evidence)
    assert a.type == "Linear" and a.params == 12 and a.block is not None and "features" in a.missing


def test_the_synthesis_on_the_saved_audit_gives_the_same_cards(roles_report: AuditReport, tmp_path: Path) -> None:
    auditor.save_report(roles_report, tmp_path, formats=("json",))
    saved = load_report(tmp_path)
    assert saved.schema_version == "1.3" and saved.cards == roles_report.cards
    assert synthesize(saved) == roles_report.cards
    old = saved.model_copy(update={"cards": [], "blocks": [], "schema_version": "1.2"})
    assert {c.module: c.tags for c in synthesize(old) if c.module in ("a", "b", "stem")} == \
        {c.module: c.tags for c in roles_report.cards if c.module in ("a", "b", "stem")}


def test_with_an_analysis_turned_off_the_card_says_what_is_missing() -> None:
    report = _audit(Roles(), _onehot(), analyses=["inventory", "gradients", "probes"])
    card = report.card("a")
    assert "ablation" in card.missing and card.missing_why["ablation"].startswith("not run")
    assert not any(t.startswith("class-specific") for t in card.tags)
    assert "Not measured here: ablation (not run" in card.statement or "ablation (not run" in card.statement


class Planted(nn.Module):
    """Four parallel one-unit blocks read x (9 features); only `blocks.2` reads the last one, which carries the
    label, and the head reads `blocks.0`: the label becomes linearly readable at blocks.2 (a re-initialized
    one-unit block mixes it with eight noise features), which the decision never uses (present but unused)."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(9, 1) for _ in range(4)])
        with torch.no_grad():
            for i, block in enumerate(self.blocks):
                block.weight.zero_()
                block.weight[0, 8 if i == 2 else i] = 3.0
        self.head = nn.Linear(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [block(x) for block in self.blocks]
        return self.head(outs[0])


def _planted_data(n: int = 120) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    y = torch.arange(n) % 2
    x = portable_randn(n, 9, generator=g)
    x[:, 8] = (y * 2 - 1).float() + 0.3 * portable_randn(n, generator=g)
    return x, y


def test_the_block_where_a_planted_property_becomes_readable_carries_it_unused() -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Planted()
    report = _audit(model, _planted_data(), analyses=FAST)
    card = report.card("blocks.2")
    assert "carries: label" in card.tags, card.statement
    assert "unused by the decision" in card.tags
    assert "where it first becomes decodable and the peak over layers" in card.statement
    assert any("present here but unused" in line for line in card.agreement)
    for other in ("blocks.1", "blocks.3"):
        assert "carries: label" not in report.card(other).tags



class Twins(nn.Module):
    """`left` and `right` are parallel copies of one block (3× and 2× the stem's output), summed before the head:
    each alone decides like the sum, so replacing `left` by its mean (a nearly uniform constant) changes no
    prediction (margins ≥ 1 against a constant that varies by well under 0.1 across classes) although its
    |gradient × activation| is 60% of the largest: `right` compensates. The stem passes its input on unchanged, so
    the label is as decodable from it as from a re-initialized (random, invertible) stem."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = _linear([[1, 0, 0], [0, 1, 0], [0, 0, 1]], [0, 0, 0])
        self.left = _linear([[3, 0, 0], [0, 3, 0], [0, 0, 3]], [0, 0, 0])
        self.right = _linear([[2, 0, 0], [0, 2, 0], [0, 0, 2]], [0, 0, 0])
        self.head = _linear([[1, 0, 0], [0, 1, 0], [0, 0, 1]], [0, 0, 0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        return self.head(self.left(s) + self.right(s))


def test_a_block_duplicated_by_a_parallel_one_reads_as_compensated() -> None:
    report = _audit(Twins(), _onehot(), analyses=FAST)
    left = report.card("left")
    assert any("another module compensates" in line for line in left.agreement), (left.statement, left.agreement)
    assert "main path" not in left.tags and "critical" not in left.tags
    stem = report.card("stem")
    assert "main path" in stem.tags and not any("compensates" in line for line in stem.agreement)
    # The label is decodable from the stem (it is the input), only no better than at random: the card says that,
    # not that the property is not decodable there.
    assert any("no better than from the re-initialized network" in line for line in stem.agreement), stem.agreement
    assert not any("is decodable here: it does something" in line for line in stem.agreement)


def test_every_clause_links_to_the_row_it_comes_from(roles_report: AuditReport) -> None:
    import re

    from auditor.report.html import render_html

    page = render_html(roles_report)
    ids = set(re.findall(r'id="([^"]+)"', page))
    links = re.findall(r'class="clause-source" href="#([^"]+)"', page)
    assert links and all(link in ids for link in links), [link for link in links if link not in ids]
    assert "row-ablation.ranked-a" in links  # the class-specific clause of `a` opens its row of the ablation table
    assert "row-probes.results.label-a" in ids  # every module's first row in a section table has its anchor
