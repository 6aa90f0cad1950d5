"""A realistic AuditReport built by hand, with hostile strings where a report carries user text."""

from __future__ import annotations

import base64
import io

from auditor.schema.findings import Finding, Severity
from auditor.schema.report import AuditReport, Cell, Cost, Figure, Metadata, ModuleRow, Section, Table, decide_verdict

XSS = "<script>alert(1)</script>"
PWN = "<script>window.__pwned=1</script>"
EVIL = f'{XSS}{PWN}<img src=x onerror="window.__pwned=2"> "quotes" & ampersands'
EVIL_MODULE = f"head.{EVIL}"
LAYERS = 3


def _row(name: str, type: str, depth: int, *, params: int = 0, calls: float = 1.0,
         shape: list[int | None] | None = None, stats: tuple[float, float, float, float] | None = None,
         zero: float | None = None, units: int | None = None, dead: int | None = None,
         nan: int = 0, inf: int = 0, time: float | None = None) -> ModuleRow:
    parent = None if depth == 0 else name.rsplit(".", 1)[0] if "." in name else ""
    mean, std, low, high = stats if stats is not None else (None, None, None, None)
    return ModuleRow(
        name=name, type=type, depth=depth, parent=parent, params=params,
        trainable_params=params if "embed" not in name else 0, own_params=params,
        calls_per_forward=calls, order=None if calls == 0 else 0,
        output_shape=shape if calls else None, output_dtype="torch.float32" if calls else None,
        n_outputs=1 if calls else 0, mean=mean, std=std, min=low, max=high, zero_fraction=zero,
        units=units, dead_units=dead, nan_count=nan, inf_count=inf, time_share=time,
    )


def make_modules() -> list[ModuleRow]:
    """40 rows: a small text transformer, depths 0-4, with unused, dead, NaN and hostile modules."""
    seq: list[int | None] = [None, None, 128]
    rows = [
        _row("", "TinyTextClassifier", 0, params=1_204_226, shape=[None, 2],
             stats=(0.0123, 1.87, -4.2, 5.1), time=1.0),
        _row("embeddings", "Embeddings", 1, params=1_031_936, shape=seq, stats=(1.2e-05, 0.98, -3.9, 4.4), time=0.041),
        _row("embeddings.word", "Embedding", 2, params=960_000, shape=seq, stats=(3.4e-06, 0.51, -2.2, 2.3), zero=0.0, time=0.012),
        _row("embeddings.position", "Embedding", 2, params=16_384, shape=[1, None, 128], stats=(-0.0021, 0.2, -0.8, 0.79), time=0.004),
        _row("embeddings.norm", "LayerNorm", 2, params=256, shape=seq, stats=(1.2e-08, 0.999, -3.9, 4.4), time=0.009),
        _row("embeddings.dropout", "Dropout", 2, shape=seq, stats=(1.2e-08, 0.999, -3.9, 4.4), time=0.001),
        _row("encoder", "Encoder", 1, params=3 * 66_048 + 256, shape=seq, stats=(0.03, 1.1, -6.0, 7.2), time=0.86),
        _row("encoder.layers", "ModuleList", 2, params=3 * 66_048, calls=0),
    ]
    for i in range(LAYERS):
        block = f"encoder.layers.{i}"
        rows += [
            _row(block, "TransformerBlock", 3, params=66_048, shape=seq, stats=(0.01 * i, 1.0 + i, -5.0, 6.0), time=0.28),
            _row(f"{block}.attention", "MultiheadAttention", 4, params=66_048 - 33_536 - 512, shape=seq,
                 stats=(0.002, 0.44, -2.1, 2.5), time=0.14),
            _row(f"{block}.attn_norm", "LayerNorm", 4, params=256, shape=seq, stats=(0.0, 1.0, -4.1, 4.0), time=0.01),
            _row(f"{block}.ff1", "Linear", 4, params=16_512, shape=[None, None, 128], stats=(-0.12, 0.9, -3.3, 3.1), time=0.05),
            _row(f"{block}.act", "ReLU", 4, shape=[None, None, 128], stats=(0.31, 0.52, 0.0, 3.1),
                 zero=0.55 + 0.1 * i, units=128, dead=3 if i == 1 else 0, time=0.004),
            _row(f"{block}.ff2", "Linear", 4, params=16_512, shape=seq, stats=(0.004, 0.71, -2.8, 2.9),
                 nan=12 if i == 2 else 0, inf=1 if i == 2 else 0, time=0.05),
            _row(f"{block}.ff_norm", "LayerNorm", 4, params=256, shape=seq, stats=(0.0, 1.0, -4.3, 4.2), time=0.01),
            _row(f"{block}.dropout", "Dropout", 4, shape=seq, stats=(0.0, 1.0, -4.3, 4.2), calls=2.0, time=0.002),
        ]
    rows += [
        _row("encoder.final_norm", "LayerNorm", 2, params=256, shape=seq, stats=(0.0, 1.0, -4.0, 4.1), time=0.01),
        _row("pooler", "Pooler", 1, params=16_512, shape=[None, 128], stats=(0.05, 0.6, -0.99, 0.99), time=0.02),
        _row("pooler.dense", "Linear", 2, params=16_512, shape=[None, 128], stats=(0.07, 0.8, -2.6, 2.4), time=0.015),
        _row("pooler.act", "Tanh", 2, shape=[None, 128], stats=(0.05, 0.6, -0.99, 0.99), time=0.002),
        _row("head", "Sequential", 1, params=258, shape=[None, 2], stats=(0.0123, 1.87, -4.2, 5.1), time=0.01),
        _row("head.dropout", "Dropout", 2, shape=[None, 128], stats=(0.05, 0.6, -0.99, 0.99), time=0.001),
        _row(EVIL_MODULE, "Linear", 2, params=258, shape=[None, 2], stats=(0.0123, 1.87, -4.2, 5.1), time=0.004),
        _row("unused_adapter", "Linear", 1, params=16_512, calls=0),
        _row("unused_adapter_norm", "LayerNorm", 1, params=256, calls=0),
        _row("aux_head", "Linear", 1, params=1_290, shape=[None, 10], stats=(1.5e-07, 2.2e-06, -9.1e-06, 8.8e-06), time=0.003),
    ]
    return rows


def make_png(*, width: float = 4.0, height: float = 2.4) -> str:
    """A small real PNG (a bar chart), base64-encoded."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    try:
        ax.bar(["embed", "layer 0", "layer 1", "layer 2", "pooler"], [4.1, 28.0, 29.5, 28.5, 2.0], color="#4c72b0")
        ax.set_ylabel("time %")
        ax.set_title("Forward time by block")
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", metadata={"Software": None})
    finally:
        plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def make_sections() -> list[Section]:
    """Inventory and performance sections with metrics, tables, a figure and findings; one failed section."""
    inventory = Section(
        id="inventory", title="Inventory",
        summary="What the model is made of: parameters by module type, unused and dead modules.",
        cost=Cost(forwards=1, backwards=0, note="the shared capture"), seconds=0.84,
        metrics={"params": 1_204_226.0, "trainable_fraction": 0.2014, "modules": 40.0, "dead_unit_fraction": 0.0078},
        tables=[Table(
            id="by_type", title="Parameters by module type", columns=["type", "modules", "params", "share"],
            rows=[["Linear", 12, 116_738, 0.097], ["Embedding", 2, 976_384, 0.811], ["LayerNorm", 12, 3_328, 0.0028],
                  ["MultiheadAttention", 3, 96_000, 0.0797], [EVIL, 1, None, None], ["Dropout", 6, 0, 0.0]],
            caption="Share of all parameters; Dropout modules hold none.")],
        findings=[
            Finding(id="inventory.unused_module", severity=Severity.INFO, module="unused_adapter",
                    message="unused_adapter (16.5k parameters) was never called during the forward pass.",
                    evidence={"params": 16_512, "calls": 0}),
            Finding(id="inventory.dead_units", severity=Severity.WARN, module="encoder.layers.1.act",
                    message="3 of 128 ReLU units in encoder.layers.1.act never fired on the audit data.",
                    evidence={"dead_units": 3, "units": 128, "samples": 512}),
            Finding(id="inventory.nan_outputs", severity=Severity.FAIL, module="encoder.layers.2.ff2",
                    message="encoder.layers.2.ff2 produced 12 NaN and 1 Inf values.",
                    evidence={"nan": 12, "inf": 1}),
            Finding(id="inventory.suspicious_name", severity=Severity.WARN, module=EVIL_MODULE,
                    message=f"A module name holds markup: {EVIL}", evidence={"length": len(EVIL_MODULE)}),
        ],
    )
    slowest: list[list[Cell]] = [[f"encoder.layers.{i}", "TransformerBlock", 0.28, 3.98] for i in range(LAYERS)]
    slowest += [["embeddings", "Embeddings", 0.041, 0.58], ["pooler", "Pooler", 0.02, None]]
    performance = Section(
        id="performance", title="Performance",
        summary="Latency and memory of the forward pass over the audit data, and where the time goes.",
        cost=Cost(forwards=3), seconds=2.31,
        metrics={"latency_ms": 14.2, "throughput_per_s": 2253.5, "peak_memory_mb": 183.0, "accuracy": 0.912},
        tables=[Table(
            id="slowest", title="Slowest modules", columns=["module", "type", "time %", "ms per forward"],
            rows=slowest)],
        figures=[Figure(id="time_by_block", title="Forward time by block", data_base64=make_png(),
                        alt="Bar chart of the share of forward time per block",
                        caption="The three encoder layers take 86% of the forward time.")],
        findings=[
            Finding(id="performance.slow_module", severity=Severity.INFO, module="encoder.layers.1",
                    message="encoder.layers.1 is the slowest block (29.5% of the forward time).",
                    evidence={"time_share": 0.295}),
            Finding(id="performance.low_throughput", severity=Severity.WARN, module=None,
                    message="Throughput is below 5000 samples/s on cpu.", evidence={"throughput": 2253.5}),
        ],
    )
    try:
        raise RuntimeError(f"CUDA out of memory while attributing batch 3 {EVIL}")
    except RuntimeError as exc:
        attribution = Section.failed("attribution", "Attribution", exc, seconds=0.12)
    return [inventory, performance, attribution]


def make_sample_report() -> AuditReport:
    """A report as the pipeline would write it, with hostile strings in the places users control."""
    sections = make_sections()
    findings = [f for section in sections for f in section.findings]
    metadata = Metadata(
        model_name=f"tiny-sentiment {EVIL}", model_source="./models/tiny-sentiment",
        model_class="demo.TinyTextClassifier", weights_sha256="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        modality="text", task="classification", n_samples=512, n_classes=2, class_names=["negative", "positive"],
        data_source="sentiment_heldout.csv", created_at="2025-01-15T10:32:07+00:00", auditor_version="0.1.0",
        torch_version="2.5.1+cpu", transformers_version="4.46.0", python_version="3.11.9",
        platform="Linux-6.1-x86_64", device="cpu", seed=0,
        config={"batch_size": 32, "analyses": ["inventory", "performance", "attribution"], "note": EVIL},
        stage_seconds={"load": 1.92, "capture": 0.84, "analyses": 2.43, "render": 0.61}, total_seconds=5.8,
        notes={"heldout_accuracy": 0.912, "trained_by": f"demo {EVIL}"},
    )
    return AuditReport(
        metadata=metadata, verdict=decide_verdict(findings), modules=make_modules(), sections=sections,
        findings=findings, metrics={"accuracy": 0.912, "params": 1_204_226.0},
    )
