"""The `auditor` command. Exit codes: 0 done, 1 policy failed (check), 2 bad input, 3 internal error."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from auditor.errors import AuditorError, ExitCode

out = Console()
err = Console(stderr=True)


def _click_exceptions() -> Any:
    """click's exceptions as this typer raises them (typer >= 0.20 ships its own copy as typer._click)."""
    vendored = getattr(typer.core, "_click", None)
    return vendored.exceptions if vendored is not None else importlib.import_module("click.exceptions")


_CLICK = _click_exceptions()


class _OneLineErrors(TyperGroup):
    """Usage errors (an unknown option, `--max-samples 0`) get the same single `error:` line and exit 2 as
    any other bad input, instead of click's boxed usage panel."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, windows_expand_args: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, windows_expand_args, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except getattr(_CLICK, "NoArgsIsHelpError", ()):
            sys.exit(int(ExitCode.BAD_INPUT))  # the help is already printed
        except _CLICK.ClickException as error:
            ctx = getattr(error, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if isinstance(error, _CLICK.UsageError) and ctx else ""
            err.print(f"[bold red]error:[/] {escape(error.format_message())}{escape(hint)}", soft_wrap=True)
            sys.exit(int(ExitCode.BAD_INPUT))
        except typer.Abort:
            err.print("Aborted.")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)  # a command's typer.Exit(code), or 0 when it returned


app = typer.Typer(
    cls=_OneLineErrors,
    name="auditor",
    help="Audit a PyTorch model before you ship it: walk every module, measure it, and write an "
         "HTML + PDF + JSON report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", help="Hugging Face model directory, or factory [bold]package.module:function[/] "
    "returning an nn.Module.", rich_help_panel="Model")]
WeightsOpt = Annotated[Optional[Path], typer.Option(
    help="Weights for a factory model: .safetensors, or a state_dict file (read with weights_only=True).",
    rich_help_panel="Model")]
HeadOpt = Annotated[Optional[Path], typer.Option(
    help="Linear head (.safetensors with weight, bias) on a bare encoder's pooled output.", rich_help_panel="Model")]
TrustOpt = Annotated[bool, typer.Option(
    "--trust-pickle", help="Allow unpickling a full model file. Unpickling runs code: only for files you trust.",
    rich_help_panel="Model")]
DataOpt = Annotated[Optional[Path], typer.Option(
    "--data", "-d", help="Image folder (one sub-folder per class), .npz (x, y), or .csv / .jsonl text.",
    rich_help_panel="Data")]


def _fail(error: AuditorError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(str(error))}", soft_wrap=True)
    return typer.Exit(int(ExitCode.BAD_INPUT))


def _internal(error: Exception) -> typer.Exit:
    err.print(f"[bold red]internal error:[/] {escape(type(error).__name__)}: {escape(str(error))}", soft_wrap=True)
    err.print("[dim]Run with AUDITOR_DEBUG=1 for the traceback; please report it with the command you ran.[/]")
    if os.environ.get("AUDITOR_DEBUG"):
        err.print_exception()
    return typer.Exit(int(ExitCode.INTERNAL_ERROR))


@app.command()
def run(
    model: ModelOpt = None,
    data: DataOpt = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for audit.json, report.html, report.pdf.")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="audit.toml; options given here override it.")] = None,
    weights: WeightsOpt = None,
    head: HeadOpt = None,
    trust_pickle: TrustOpt = False,
    name: Annotated[Optional[str], typer.Option(help="Model name shown in the report \\[default: the model's class].", rich_help_panel="Model")] = None,
    text_column: Annotated[Optional[str], typer.Option(help="Text column of CSV/JSONL data \\[default: text].", rich_help_panel="Data")] = None,
    label_column: Annotated[Optional[str], typer.Option(help="Label column of CSV/JSONL data \\[default: label].", rich_help_panel="Data")] = None,
    unlabeled: Annotated[bool, typer.Option("--unlabeled", help="The data has no labels: skip performance.", rich_help_panel="Data")] = False,
    max_samples: Annotated[Optional[int], typer.Option(min=1, help="Audit at most this many samples, drawn with --seed \\[default: 512].", rich_help_panel="Data")] = None,
    image_size: Annotated[Optional[int], typer.Option(min=4, help="Resize folder images to this square size (factory models).", rich_help_panel="Data")] = None,
    image_mode: Annotated[Optional[str], typer.Option(help="Folder images as RGB (3 channels) or L (grey, 1 channel) for factory models \\[default: RGB].", rich_help_panel="Data")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda or auto \\[default: auto].", rich_help_panel="Run")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Samples per forward pass \\[default: 32].", rich_help_panel="Run")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for sampling and every random step \\[default: 0].", rich_help_panel="Run")] = None,
    formats: Annotated[str, typer.Option("--formats", help="Comma-separated: json,html,pdf.", rich_help_panel="Run")] = "json,html,pdf",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.", rich_help_panel="Run")] = False,
) -> None:
    """Audit a model on data and write [bold]audit.json[/], [bold]report.html[/] and [bold]report.pdf[/].

    Examples:

      auditor run --model ./my-hf-model --data reviews.csv --out audit/

      auditor run --model mypkg.nets:build --weights net.safetensors --data digits.npz --out audit/

      auditor run --config audit.toml
    """
    from auditor.config import AuditConfig, load_config
    from auditor.pipeline import run_audit
    from auditor.progress import RichProgress, SilentProgress

    try:
        base = load_config(config) if config else AuditConfig()
        fmt = tuple(f.strip() for f in formats.split(",") if f.strip())
        bad = [f for f in fmt if f not in ("json", "html", "pdf")]
        if bad or not fmt:
            raise AuditorError(f"--formats takes json, html and/or pdf, not {formats!r}")
        overrides = {
            "model.path": model, "model.weights": str(weights) if weights else None,
            "model.head": str(head) if head else None, "model.trust_pickle": trust_pickle or None,
            "model.name": name, "data.path": str(data) if data else None, "data.text_column": text_column,
            "data.label_column": label_column, "data.max_samples": max_samples, "data.image_size": image_size,
            "data.image_mode": image_mode,
            "out": str(out_dir) if out_dir else None, "device": device, "batch_size": batch_size, "seed": seed,
        }
        cfg = base.with_overrides(overrides)
        if unlabeled:
            cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"label_column": None})})
        if not cfg.out:
            raise AuditorError("no output folder: pass --out DIR (or out = \"...\" in the config)")
        progress = SilentProgress() if quiet else RichProgress()
        report = run_audit(cfg, progress=progress)
        progress.note(f"writing {', '.join(fmt)} to {cfg.out}")
        paths = report.save(cfg.out, formats=fmt)
    except AuditorError as error:
        raise _fail(error) from None
    except (KeyboardInterrupt, typer.Exit):
        raise
    except Exception as error:  # a bug of ours or of the model: say so, exit 3
        raise _internal(error) from None
    _print_summary(report, paths)


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for the demo reports.")] = Path("sample_reports"),
    only: Annotated[Optional[str], typer.Option(help="Only this demo: digits_cnn or minilm_sentiment.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Audit the two embedded default models (a digits CNN and MiniLM sentiment) into OUT/<name>/.

    The digits CNN trains in seconds on scikit-learn's bundled digits; the MiniLM sentiment head trains on
    the project's own sentiment sentences. Both are cached after the first run; nothing is downloaded.
    """
    from auditor.demo import DEMOS, run_demo
    from auditor.progress import RichProgress, SilentProgress

    names = DEMOS if only is None else (only,)
    try:
        if only is not None and only not in DEMOS:
            raise AuditorError(f"--only takes one of {', '.join(DEMOS)}, not {only!r}")
        reports = run_demo(out_dir, names=names, progress=SilentProgress() if quiet else RichProgress())
    except AuditorError as error:
        raise _fail(error) from None
    except (KeyboardInterrupt, typer.Exit):
        raise
    except Exception as error:
        raise _internal(error) from None
    for demo_name, report in reports.items():
        trained = report.metadata.notes.get("heldout_accuracy_at_training")
        out.print(f"[bold]{escape(demo_name)}[/]: held-out accuracy at training {trained:.1%}" if isinstance(trained, float) else demo_name)
        _print_summary(report, {"folder": str(out_dir / demo_name)})


def _print_summary(report: object, paths: dict[str, str]) -> None:
    from auditor.report.schema import AuditReport

    assert isinstance(report, AuditReport)
    colour = {"pass": "green", "warn": "yellow", "fail": "red"}[report.verdict.status]
    out.print(f"[bold {colour}]{report.verdict.status.upper()}[/] {escape(report.verdict.headline)}")
    for finding in report.findings:
        if finding.severity.value != "info":
            out.print(f"  [{colour if finding.severity.value == report.verdict.status else 'yellow'}]"
                      f"{finding.severity.value}[/] {escape(finding.id)}: {escape(finding.message)}")
    for kind, path in paths.items():
        out.print(f"  {kind}: {escape(str(path))}")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    app()


if __name__ == "__main__":
    main()
