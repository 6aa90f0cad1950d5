"""The two embedded default models and `run_demo`, which audits both and writes their reports."""

from __future__ import annotations

from pathlib import Path

from auditor.config import AnalysesConfig, AuditConfig, DataSpec, GeneratorSpec, ModelSpec
from auditor.paths import cache_dir
from auditor.progress import Progress, SilentProgress
from auditor.schema.report import AuditReport

DEMOS = ("digits_cnn", "digits_cnn_v2", "minilm_sentiment", "minilm_encoder", "digits_gan", "tiny_lm")
"""`digits_cnn_v2` is a second release of the digits CNN, degraded on purpose (`auditor.demo.release`);
`minilm_encoder` is the bare pretrained encoder of `minilm_sentiment`, without its head: its report shows at
which layer sentiment becomes linearly decodable (the probes read the held-out labels); `digits_gan` is a
class-conditional GAN of digits, judged by its discriminator and by the digits CNN; `tiny_lm` is a 2-layer GPT-2
trained here on repeated runs of made-up words (`auditor.demo.tiny_lm`)."""


Notes = dict[str, str | float]


def demo_config(name: str, *, progress: Progress | None = None, seed: int = 0) -> tuple[AuditConfig, Notes]:
    """The audit configuration of one demo model (training and caching it first if needed), and the notes its
    report's metadata records (how it was trained)."""
    progress = progress or SilentProgress()
    if name in ("digits_cnn", "digits_cnn_v2"):
        return _digits(name, progress, seed)
    if name in ("minilm_sentiment", "minilm_encoder"):
        return _minilm(name, progress, seed)
    if name == "digits_gan":
        return _gan(progress, seed)
    if name == "tiny_lm":
        return _tiny_lm(progress, seed)
    raise ValueError(f"unknown demo {name!r}; known: {DEMOS}")


def _trained(info: Notes) -> Notes:
    return {"heldout_accuracy_at_training": round(float(info["heldout_accuracy"]), 4),
            "train_samples": info["train_samples"], "heldout_samples": info["heldout_samples"]}


def _digits(name: str, progress: Progress, seed: int) -> tuple[AuditConfig, Notes]:
    from auditor.demo import digits
    from auditor.demo.release import DEGRADED_DIGIT, KEEP_FRACTION

    second = name == "digits_cnn_v2"
    progress.note(f"digits CNN{' v2 (digit 3 under-represented)' if second else ''}: preparing "
                  "(trains once, then cached)")
    info = digits.prepare(cache_dir(), seed=seed, degrade=(DEGRADED_DIGIT, KEEP_FRACTION) if second else None)
    config = AuditConfig(
        model=ModelSpec(path="auditor.demo.digits:build_model", weights=str(info["weights"]),
                        name="digits-cnn-v2" if second else "digits-cnn"),
        data=DataSpec(path=str(info["data"])), seed=seed, batch_size=128,
        # does the CNN read the (nearly always empty) corners? trust replaces them and counts flips
        analyses=AnalysesConfig.model_validate({"trust": {"region": "corners"}}),
    )
    return config, _trained(info)


def _minilm(name: str, progress: Progress, seed: int) -> tuple[AuditConfig, Notes]:
    from auditor.demo import sentiment

    progress.note("MiniLM sentiment: preparing (embeds 1,100 sentences once, ~10 s, then cached)")
    info = sentiment.prepare(cache_dir(), seed=seed)
    if name == "minilm_encoder":  # the bare encoder: its labels are the probes' task
        config = AuditConfig(model=ModelSpec(path=str(info["encoder"]), name="minilm-encoder"),
                             data=DataSpec(path=str(info["data"])), seed=seed, batch_size=32)
        return config, {"heldout_samples": info["heldout_samples"]}
    config = AuditConfig(
        model=ModelSpec(path=str(info["encoder"]), head=str(info["head"]), name="minilm-sentiment"),
        data=DataSpec(path=str(info["data"])), seed=seed, batch_size=32,
    )
    return config, _trained(info)


def _gan(progress: Progress, seed: int) -> tuple[AuditConfig, Notes]:
    from auditor.demo import digits, gan

    progress.note("digits GAN: preparing (trains once, ~40 s, then cached; the digits CNN judges it)")
    cnn = digits.prepare(cache_dir(), seed=seed)
    info = gan.prepare(cache_dir(), seed=seed)
    config = AuditConfig(
        model=ModelSpec(path="auditor.demo.gan:build_generator", weights=str(info["generator"]), name="digits-gan"),
        generator=GeneratorSpec(
            discriminator=ModelSpec(path="auditor.demo.gan:build_discriminator",
                                    weights=str(info["discriminator"])),
            classifier=ModelSpec(path="auditor.demo.digits:build_model", weights=str(cnn["weights"]))),
        data=DataSpec(max_samples=1000), seed=seed, batch_size=250,
        # which of the last block's channels draws which digit?
        analyses=AnalysesConfig.model_validate({"judge": {"unit_layers": ["up"]}}),
    )
    return config, {"train_samples": info["train_samples"], "train_seconds": info["train_seconds"]}


def _tiny_lm(progress: Progress, seed: int) -> tuple[AuditConfig, Notes]:
    from auditor.demo import tiny_lm

    progress.note("tiny LM: preparing (trains once, about two minutes on one core, then cached)")
    info = tiny_lm.prepare(cache_dir(), seed=seed)
    config = AuditConfig(
        model=ModelSpec(path=str(info["model"]), name="tiny-lm"),
        data=DataSpec(path=str(info["data"]), max_length=32), seed=seed, batch_size=32,
        # is a text one that repeats itself? Only a model that looks back can tell (the probes' own set); which of
        # the 256 MLP neurons matter (each ablated alone)?
        analyses=AnalysesConfig.model_validate({"heads": {"length": tiny_lm.AUDIT_HALF},
                                                "lm_ablation": {"neurons": [0, 1]},
                                                "probes": {"data": str(info["probes"]), "builtin": False}}),
    )
    return config, {k: info[k] for k in ("train_seconds", "train_steps", "final_train_loss")}


def run_demo(out_dir: str | Path, *, names: tuple[str, ...] = DEMOS, progress: Progress | None = None,
             formats: tuple[str, ...] = ("json", "html", "pdf")) -> dict[str, AuditReport]:
    """Audits the embedded models and writes `out_dir/<name>/{audit.json,report.html,report.pdf}`; the
    second digits release also gets `out_dir/release_diff/` (its diff against the first, and the check)."""
    from auditor.pipeline import run_audit
    from auditor.report.io import save_report

    progress = progress or SilentProgress()
    reports: dict[str, AuditReport] = {}
    for name in names:
        config, notes = demo_config(name, progress=progress)
        report = run_audit(config, progress=progress, notes=notes)
        if name == "digits_cnn_v2":  # a release: judged against the first, as `auditor run --baseline` would
            from auditor.demo.release import judge_release

            report = judge_release(report, reports.get("digits_cnn"), Path(out_dir), progress=progress)
        progress.note(f"{name}: writing {', '.join(formats)} to {Path(out_dir) / name}")
        save_report(report, Path(out_dir) / name, formats=formats)
        reports[name] = report
    return reports
