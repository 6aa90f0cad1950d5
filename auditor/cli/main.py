"""The `auditor` command: run, analyses, demo (and the gate's commands from `auditor.cli.gate`). Exit codes: 0 done (check: passed), 1 the policy failed (check, run --policy),
2 bad input or usage, 3 internal error."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.markup import escape

import auditor.cli.cards as atlas
import auditor.cli.gate as gate
from auditor.cli.common import OneLineErrors, err, exit_codes, out, reflow_help
from auditor.cli.gate import BaselineOpt, JunitOpt, MarkdownOpt, PolicyOpt, judge, load_gate
from auditor.errors import AuditorError

if TYPE_CHECKING:
    from auditor.cli.options import RunOptions

app = typer.Typer(
    cls=OneLineErrors,
    name="auditor",
    help="Audit a PyTorch model before you ship it: walk every module, measure it, and write an "
         "HTML + PDF + JSON report; gate a release on it ([bold]check[/], [bold]diff[/]).\n\n"
         "Exit codes: 0 done (check: passed), 1 the policy failed, 2 bad input or usage, 3 internal error.",
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
    "--data", "-d", help="Image folder (one sub-folder per class), .npz (x, y), or .csv / .jsonl text; "
    "without it only the analyses of the weights run.",
    rich_help_panel="Data")]


def _ids(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(part.strip() for part in text.split(",") if part.strip())


# Over 60 lines for a reason: its signature is the command's option declarations (Typer reads them from it); the
# body only gathers them into a RunOptions and hands over to `_run`.
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
    max_tokens: Annotated[Optional[int], typer.Option(min=8, help="Cut texts to this many tokens (a language model's are audited up to there; the report says how many were cut) \\[default: 128].", rich_help_panel="Data")] = None,
    image_size: Annotated[Optional[int], typer.Option(min=4, help="Resize folder images to this square size (factory models).", rich_help_panel="Data")] = None,
    image_mode: Annotated[Optional[str], typer.Option(help="Folder images as RGB (3 channels) or L (grey, 1 channel) for factory models \\[default: RGB].", rich_help_panel="Data")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda or auto \\[default: auto].", rich_help_panel="Run")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Samples per forward pass \\[default: 32].", rich_help_panel="Run")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for sampling and every random step \\[default: 0].", rich_help_panel="Run")] = None,
    threads: Annotated[Optional[int], typer.Option(min=1, help="CPU threads for torch \\[default: OMP_NUM_THREADS when set, else the cores this process may use, or 1 where one batch measured as fast on 1].", rich_help_panel="Run")] = None,
    analyses: Annotated[Optional[str], typer.Option("--analyses", help="Only these analyses, comma-separated (see [bold]auditor analyses[/]) \\[default: all that apply].", rich_help_panel="Run")] = None,
    skip: Annotated[Optional[str], typer.Option("--skip", help="Analyses not to run, comma-separated.", rich_help_panel="Run")] = None,
    executor: Annotated[Optional[str], typer.Option("--executor", help="Where the passes run: local, or ray (actors of a Ray cluster; \\[executor] in the config sets actors and CPUs/GPUs each) \\[default: local].", rich_help_panel="Run")] = None,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="The Ray cluster: auto, ray://host:10001 or host:6379 \\[default: RAY_ADDRESS, else a cluster started here].", rich_help_panel="Run")] = None,
    plan: Annotated[bool, typer.Option("--plan", help="Print the plan (analyses, what each needs, passes, a time estimate from one timed batch) and exit; writes nothing.", rich_help_panel="Run")] = False,
    formats: Annotated[str, typer.Option("--formats", help="Comma-separated: json,html,pdf.", rich_help_panel="Run")] = "json,html,pdf",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.", rich_help_panel="Run")] = False,
    discriminator: Annotated[Optional[str], typer.Option(help="The model is a generator: its discriminator (a factory package.module:function or a Hugging Face directory), the judge of realness.", rich_help_panel="Generator")] = None,
    discriminator_weights: Annotated[Optional[Path], typer.Option(help="Weights of a factory discriminator.", rich_help_panel="Generator")] = None,
    classifier: Annotated[Optional[str], typer.Option(help="A classifier trained on the real data, the judge of class, confidence and diversity (factory or directory).", rich_help_panel="Generator")] = None,
    classifier_weights: Annotated[Optional[Path], typer.Option(help="Weights of a factory classifier.", rich_help_panel="Generator")] = None,
    noise_dim: Annotated[Optional[int], typer.Option(min=1, help="Noise length \\[default: the generator's noise_dim/latent_dim/z_dim/nz].", rich_help_panel="Generator")] = None,
    policy: PolicyOpt = None,
    baseline: BaselineOpt = None,
    junit: JunitOpt = None,
    markdown: MarkdownOpt = None,
) -> None:
    """Audit a model on data and write [bold]audit.json[/], [bold]report.html[/] and [bold]report.pdf[/].

    Without --data only the analyses that read the weights run (see [bold]auditor analyses[/]).

    With --policy or --baseline, also judge the audit as [bold]auditor check[/] does: the verdict goes into
    the report and the exit code (0 passed, 1 the policy failed, 2 bad input).

    Examples:

      auditor run --model ./my-hf-model --data reviews.csv --out audit/

      auditor run --model mypkg.nets:build --weights net.safetensors --data digits.npz --out audit/

      auditor run --config audit.toml

      auditor run --config audit.toml --plan

      auditor run --model ./my-hf-model --analyses weights --out audit/    (no data: the weight spectra)

      auditor run --config audit.toml --policy policy.toml --baseline last-release/ --junit junit.xml

      auditor run --model mypkg.gan:generator --weights g.safetensors --discriminator mypkg.gan:discriminator
        --discriminator-weights d.safetensors --classifier mypkg.nets:build --classifier-weights c.safetensors
        --out audit/    (a generator: the noise is drawn with --seed, --max-samples vectors)
    """
    from auditor.cli.options import RunOptions

    options = RunOptions(
        model=model, weights=weights, head=head, trust_pickle=trust_pickle, name=name, data=data,
        text_column=text_column, label_column=label_column, unlabeled=unlabeled, max_samples=max_samples,
        max_tokens=max_tokens, image_size=image_size, image_mode=image_mode, out=out_dir, device=device,
        batch_size=batch_size, seed=seed, threads=threads, analyses=_ids(analyses), skip=_ids(skip),
        executor=executor, ray_address=ray_address, discriminator=discriminator, discriminator_weights=discriminator_weights, classifier=classifier,
        classifier_weights=classifier_weights, noise_dim=noise_dim)
    _run(options, config=config, formats=formats, plan=plan, quiet=quiet,
         gate=GateOptions(policy=policy, baseline=baseline, junit=junit, markdown=markdown))


@dataclass(frozen=True)
class GateOptions:
    """`auditor run`'s options that also judge the audit, as `auditor check` does."""

    policy: Path | None = None
    baseline: Path | None = None
    junit: Path | None = None
    markdown: Path | None = None

    @property
    def given(self) -> bool:
        return any(option is not None for option in (self.policy, self.baseline, self.junit, self.markdown))


def _run(options: RunOptions, *, config: Path | None, formats: str, plan: bool, quiet: bool,
         gate: GateOptions) -> None:
    """`auditor run`: the config file with the options applied, then the plan, or the audit (and its verdict)."""
    from auditor.config import AuditConfig
    from auditor.pipeline import load_config, plan_audit, run_audit
    from auditor.progress import RichProgress, SilentProgress
    from auditor.report.io import save_report
    from auditor.report.renderers import parse_formats

    verdict = None
    with exit_codes():
        base = load_config(config) if config else AuditConfig()
        fmt = parse_formats(formats)
        rules, previous = load_gate(gate.policy, gate.baseline)  # a bad policy or baseline stops us before the audit
        cfg = options.apply(base)
        if plan:
            for line in plan_audit(cfg).describe():
                out.print(escape(line), highlight=False)
            return
        if not cfg.out:
            raise AuditorError("no output folder: pass --out DIR (or out = \"...\" in the config)")
        if cfg.data.path is None and cfg.generator is None:
            err.print("[bold]note:[/] no --data given: auditing the weights alone; the analyses that read "
                      "data are not run", soft_wrap=True)
        progress = SilentProgress() if quiet else RichProgress()
        report = run_audit(cfg, progress=progress)
        if gate.given:
            try:
                verdict = judge(report, rules, previous, junit=gate.junit, markdown=gate.markdown)
            except AuditorError:
                save_report(report, cfg.out, formats=fmt)  # the audit stands; only the policy did not apply
                raise
            report = report.with_policy(verdict)
        progress.note(f"writing {', '.join(fmt)} to {cfg.out}")
        paths = save_report(report, cfg.out, formats=fmt)
    _print_summary(report, {k: str(v) for k, v in paths.items()})
    if verdict is not None:
        from auditor.report.terminal import print_verdict

        print_verdict(out, verdict)
        raise typer.Exit(verdict.exit_code)


@app.command("analyses")
def list_analyses() -> None:
    """List the analyses [bold]auditor run[/] can run: id, what applies, parameters and cost.

    Choose with --analyses / --skip, or in the config: \\[analyses] only = [...], skip = [...];
    parameters go in an \\[analyses.<id>] table.
    """
    from rich.table import Table

    from auditor.analyses import ALL_ANALYSES

    with exit_codes():
        table = Table(show_lines=False, header_style="bold")
        for column in ("id", "title", "applies to", escape("parameters ([analyses.<id>])"), "cost"):
            table.add_column(column, overflow="fold")
        for analysis in ALL_ANALYSES:
            fields = analysis.params_type.model_fields
            params = ", ".join(f"{name} = {field.default!r}" for name, field in fields.items()) or "—"
            applies = f"{', '.join(sorted(analysis.modalities))}; {', '.join(sorted(analysis.tasks))}"
            table.add_row(analysis.id, analysis.title, applies, escape(params), analysis.cost_note)
        out.print(table)


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for the demo reports.")] = Path("sample_reports"),
    only: Annotated[Optional[list[str]], typer.Option(
        help="Only this demo (repeat for several, run in the order given): digits_cnn, digits_cnn_v2, "
             "minilm_sentiment, minilm_encoder, digits_gan or tiny_lm.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Audit the embedded default models (a digits CNN, MiniLM sentiment, a digits GAN, a tiny GPT-2) into
    OUT/<name>/.

    The digits CNN trains in seconds on scikit-learn's bundled digits; the MiniLM sentiment head trains on
    the project's own sentiment sentences; the digits GAN trains in under a minute and is judged by its
    discriminator and by the digits CNN; the tiny GPT-2 (tiny_lm) trains in about a minute on text made for it.
    All are cached after the first run; nothing is downloaded.
    A second digits release, trained with digit 3 under-represented on purpose (digits_cnn_v2), is judged
    against the first: its diff and the failing check go to OUT/release_diff/.
    """
    from auditor.demo import DEMOS, run_demo
    from auditor.progress import RichProgress, SilentProgress

    names = DEMOS if not only else tuple(dict.fromkeys(only))
    with exit_codes():
        unknown = [name for name in names if name not in DEMOS]
        if unknown:
            raise AuditorError(f"--only takes one of {', '.join(DEMOS)}, not {unknown[0]!r}")
        reports = run_demo(out_dir, names=names, progress=SilentProgress() if quiet else RichProgress())
    for demo_name, report in reports.items():
        trained = report.metadata.notes.get("heldout_accuracy_at_training")
        seconds = report.metadata.notes.get("train_seconds")
        out.print(f"[bold]{escape(demo_name)}[/]: held-out accuracy at training {trained:.1%}" if isinstance(trained, float)
                  else f"[bold]{escape(demo_name)}[/]: trained in {seconds} s" if seconds is not None else demo_name)
        _print_summary(report, {"folder": str(out_dir / demo_name)})
        if report.policy is not None:
            from auditor.report.terminal import print_verdict

            out.print(f"[bold]{escape(demo_name)}[/] judged as a release against the previous audit "
                      f"(the release diff is in {escape(str(out_dir / 'release_diff'))}):")
            print_verdict(out, report.policy)


def _print_summary(report: object, paths: dict[str, str]) -> None:
    from auditor.schema.report import AuditReport

    assert isinstance(report, AuditReport)
    colour = {"pass": "green", "warn": "yellow", "fail": "red"}[report.verdict.status]
    out.print(f"[bold {colour}]{report.verdict.status.upper()}[/] {escape(report.verdict.headline)}")
    for finding in report.findings:
        if finding.severity.value != "info":
            out.print(f"  [{colour if finding.severity.value == report.verdict.status else 'yellow'}]"
                      f"{finding.severity.value}[/] {escape(finding.id)}: {escape(finding.message)}")
    for kind, path in paths.items():
        out.print(f"  {kind}: {escape(str(path))}")


gate.register(app)  # check, diff, card, policy init (auditor/cli/gate.py)
atlas.register(app)  # cards (auditor/cli/cards.py)
reflow_help(app)  # after every command is registered


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    app()


if __name__ == "__main__":
    main()
