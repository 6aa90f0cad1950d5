"""Shared fixtures: tiny Hugging Face models, data files and a CLI runner, all built locally in ~1 s.

Nothing is downloaded: the Hub is switched off before transformers is imported, and every model is
random-initialised from a config written here. Session-scoped fixtures are shared; treat them as read-only.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist's workers start with COLUMNS=80 and LINES=24 set; the CLI's consoles would read that width
    # once, at import, and every `run_cli(..., columns=N)` would get 80. A worker sees what a plain run sees.
    for _variable in ("COLUMNS", "LINES"):
        os.environ.pop(_variable, None)

import numpy as np  # noqa: E402  (after the offline switches, before anything imports transformers)
import pytest  # noqa: E402
import torch  # noqa: E402

CLASS_NAMES = ["negative", "positive"]
IMAGE_CLASSES = ["circle", "square", "stripe"]
WORDS = (
    "good great fine nice happy love loved lovely best excellent superb wonderful fun enjoy enjoyed "
    "bad awful poor sad hate hated worst boring dull terrible horrible ugly slow broken waste "
    "the a an this that it is was film movie book food place service staff room story plot "
    "very really quite not too so and but with at of to i we they"
).split()
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SCRIPT_TEXT = "this film was <script>alert(1)</script> very bad"
TEXT_ROWS: list[tuple[str, str]] = [
    ("a great film and a lovely story", "positive"),
    ("the food was awful and the service slow", "negative"),
    ("i loved this book", "positive"),
    ("really boring plot", "negative"),
    ("the staff was very nice", "positive"),
    (SCRIPT_TEXT, "negative"),
    ("we enjoyed it so much fun", "positive"),
    ("the worst room and a dull place", "negative"),
    ("excellent service and superb food", "positive"),
    ("i hated that movie", "negative"),
    ("a wonderful happy story", "positive"),
    ("not good too slow and broken", "negative"),
]


@pytest.fixture(scope="session", autouse=True)
def _auditor_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo weights and any other cache go to a throw-away folder, never the user's cache. Under pytest-xdist the
    workers share one (the run's common temporary root): each demo model trains once for the whole run, and
    `auditor.demo.cache.cache_lock` keeps two workers from training it at once."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        cache = tmp_path_factory.getbasetemp().parent / "auditor-cache"
        cache.mkdir(exist_ok=True)
    else:
        cache = tmp_path_factory.mktemp("auditor-cache")
    previous = os.environ.get("AUDITOR_CACHE_DIR")
    os.environ["AUDITOR_CACHE_DIR"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("AUDITOR_CACHE_DIR", None)
    else:
        os.environ["AUDITOR_CACHE_DIR"] = previous


# --- Hugging Face model directories ------------------------------------------------------------------

@pytest.fixture(scope="session")
def vocab_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(SPECIAL_TOKENS + WORDS) + "\n", encoding="utf-8")
    return path


def _bert_config(vocab_size: int, **extra: object):  # -> transformers.BertConfig
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=64, **extra)


def _save_tokenizer(vocab: Path, directory: Path) -> None:
    from transformers import BertTokenizerFast

    # transformers 5 reads the vocabulary from `vocab` (a path or a dict) and ignores `vocab_file`.
    BertTokenizerFast(vocab=str(vocab)).save_pretrained(str(directory))


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory, vocab_file: Path) -> Path:
    """A random-init BertForSequenceClassification with classes negative/positive, plus its tokenizer."""
    from transformers import BertForSequenceClassification

    directory = tmp_path_factory.mktemp("tiny-bert-sentiment")
    config = _bert_config(len(SPECIAL_TOKENS) + len(WORDS), num_labels=2,
                          id2label=dict(enumerate(CLASS_NAMES)), label2id={n: i for i, n in enumerate(CLASS_NAMES)})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        BertForSequenceClassification(config).save_pretrained(str(directory))
    _save_tokenizer(vocab_file, directory)
    return directory


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory, vocab_file: Path) -> Path:
    """A random-init bare BertModel (no classification head), plus its tokenizer."""
    from transformers import BertModel

    directory = tmp_path_factory.mktemp("tiny-bert-encoder")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        BertModel(_bert_config(len(SPECIAL_TOKENS) + len(WORDS))).save_pretrained(str(directory))
    _save_tokenizer(vocab_file, directory)
    return directory


@pytest.fixture(scope="session")
def encoder_head_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A linear head for `tiny_encoder_dir`: weight (2, 32), bias (2,), labels negative,positive."""
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("head") / "head.safetensors"
    generator = torch.Generator().manual_seed(0)
    save_file({"weight": torch.randn(2, 32, generator=generator), "bias": torch.zeros(2)}, str(path),
              metadata={"labels": ",".join(CLASS_NAMES), "pooling": "mean"})
    return path


@pytest.fixture(scope="session")
def tiny_vit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init ViTForImageClassification on 16×16 images, 3 classes, plus its image processor."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    directory = tmp_path_factory.mktemp("tiny-vit")
    config = ViTConfig(image_size=16, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=1,
                       num_attention_heads=2, intermediate_size=64, num_labels=3,
                       id2label=dict(enumerate(IMAGE_CLASSES)), label2id={n: i for i, n in enumerate(IMAGE_CLASSES)})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ViTForImageClassification(config).save_pretrained(str(directory))
    ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(str(directory))
    return directory


# --- data files -------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 class sub-folders × 4 RGB PNGs of 16×16, each class a different pattern."""
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for k, name in enumerate(IMAGE_CLASSES):
        folder = root / name
        folder.mkdir()
        for i in range(4):
            pixels = rng.integers(0, 64, size=(16, 16, 3), dtype=np.uint8)
            pixels[:, :, k] += 160  # one colour channel per class
            Image.fromarray(pixels, mode="RGB").save(folder / f"{name}_{i}.png")
    return root


def _write_csv(path: Path, rows: Sequence[tuple[str, str]], header: Sequence[str] = ("text", "label")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def text_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 rows of `text,label` (negative/positive), one text holding `<script>alert(1)</script>`."""
    return _write_csv(tmp_path_factory.mktemp("text") / "reviews.csv", TEXT_ROWS)


@pytest.fixture(scope="session")
def text_jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rows of `text_csv` as JSON lines."""
    path = tmp_path_factory.mktemp("text") / "reviews.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in TEXT_ROWS), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def write_csv() -> Callable[..., Path]:
    """`write_csv(path, rows, header=("text", "label"))` writes a small CSV and returns its path."""
    return _write_csv


def _digit_arrays(n: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(0.0, 0.3, size=(n, 1, 8, 8)).astype(np.float32)
    for i, label in enumerate(y):
        x[i, 0, :, 2 * label: 2 * label + 3] += 1.0  # a vertical bar whose position is the class
    return x, y.astype(np.int64)


@pytest.fixture(scope="session")
def tiny_cnn_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 samples of x (n, 1, 8, 8) float32 and y in {0, 1, 2}, for `tests.models:build_tiny_cnn`."""
    path = tmp_path_factory.mktemp("arrays") / "bars.npz"
    x, y = _digit_arrays(24)
    np.savez(path, x=x, y=y)
    return path


@pytest.fixture(scope="session")
def cifar_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 samples of x (n, 3, 16, 16) float32 and y in 0..9, for `tests.models:build_cifar_resnet`."""
    path = tmp_path_factory.mktemp("arrays") / "cifar.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.normal(size=(30, 3, 16, 16)).astype(np.float32), y=np.arange(30) % 10)
    return path


@pytest.fixture(scope="session")
def tiny_cnn_safetensors(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The state_dict of a TinyCNN (seed 1, so it differs from the factory's own init) as safetensors."""
    from safetensors.torch import save_file

    from tests.models import TinyCNN

    path = tmp_path_factory.mktemp("weights") / "tiny_cnn.safetensors"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        save_file(TinyCNN().state_dict(), str(path))
    return path


# --- the command line -------------------------------------------------------------------------------

@dataclass
class CliResult:
    """What `auditor ...` did: its exit code and what it printed on each stream."""

    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None


@pytest.fixture
def run_cli() -> Callable[..., CliResult]:
    """`run_cli("run", "--model", ...)` invokes the real typer app in-process.

    The terminal is `columns` wide (default: wide enough that rich never wraps a message); pass
    `columns=80` to see what a narrow terminal or a CI log gets.
    """
    from typer.testing import CliRunner

    from auditor.cli import app

    def invoke(*args: str | os.PathLike[str], columns: int = 10_000) -> CliResult:
        result = CliRunner(env={"COLUMNS": str(columns)}).invoke(app, [str(a) for a in args])
        try:
            stderr = result.stderr
        except ValueError:  # click < 8.2 mixes stderr into output unless asked otherwise
            stderr = result.output
        stdout = result.stdout if stderr is not result.output else ""
        return CliResult(result.exit_code, stdout, stderr, result.exception)

    return invoke


# --- headless Chromium (Debian's package; never `playwright install`, which downloads a browser) ---------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class PageLog:
    """Console errors, page errors and every request a page made."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.requests: list[str] = []


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A headless Chromium; skipped where none is installed, but never skipped in CI (CI=true)."""
    if not Path(CHROMIUM).is_file():
        reason = f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium (needs root)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def open_page(browser: Any, path: Path) -> tuple[Any, PageLog]:
    """Opens a local HTML file, logging console errors, page errors and requests from the start."""
    log = PageLog()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("console", lambda message: log.errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: log.errors.append(str(error)))
    page.on("request", lambda request: log.requests.append(request.url))
    page.goto(path.as_uri(), wait_until="load")
    return page, log


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The files holding slow end-to-end tests run first (each keeps its own order): under pytest-xdist
    (`make test`) the longest files then start at once on the workers instead of finishing last on one."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in slow_files)
