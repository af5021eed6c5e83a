"""What `modelops dev` shows: a line per build stage, the figures table."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def figures_table(result: Any, build_seconds: float, infer_ms: float) -> Table:
    """Accuracy, latency, throughput and build time of the served engine."""
    summary, manifest = result.summary, result.manifest
    table = Table(title=f"engine {manifest.key[:19]}...", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("engine", f"{manifest.engine} {manifest.precision}")
    if summary.accuracy is not None:
        acc = summary.accuracy
        table.add_row(
            "accuracy", f"max abs error {acc.max_abs_error:.3g}, rel {acc.max_rel_error:.3g}"
        )
    if summary.latency_ms is not None:
        lat = summary.latency_ms
        table.add_row(
            f"latency (batch {manifest.opt_batch_size})",
            f"p50 {lat.p50:.3g} ms, p99 {lat.p99:.3g} ms",
        )
    if summary.throughput is not None:
        table.add_row("throughput", f"{summary.throughput:,.0f} inferences/s")
    for figures in manifest.shapes:
        dims = ", ".join(f"{name} {dims}" for name, dims in figures.dims.items())
        latency = f"p50 {figures.p50_ms:.3g} ms" if figures.p50_ms is not None else ""
        error = (
            f"max abs error {figures.max_abs_error:.3g}"
            if figures.max_abs_error is not None
            else ""
        )
        table.add_row(
            f"{figures.shape} shape ({dims})", ", ".join(p for p in (latency, error) if p)
        )
    _int8_rows(table, manifest)
    built = "cached (engine-key hit)" if result.cached else f"{build_seconds:.1f} s"
    table.add_row("build", built)
    table.add_row("first inference", f"{infer_ms:.1f} ms over HTTP (binary tensors)")
    return table


def _int8_rows(table: Table, manifest: Any) -> None:
    """int8 against fp32: the gate's task figures, the calibration, size and speed."""
    acc = manifest.accuracy
    if acc is not None and acc.agreement is not None:
        table.add_row(
            f"{acc.metric} with fp32",
            f"{acc.agreement:.2%} of {acc.samples} (min {acc.min_agreement:.2%})",
        )
    if acc is not None and acc.accuracy is not None:
        table.add_row(
            "accuracy (labels)",
            f"{acc.accuracy:.2%} vs fp32 {acc.baseline_accuracy:.2%} "
            f"(max drop {acc.max_accuracy_drop:.2%})",
        )
    quantization = manifest.quantization
    if quantization is not None:
        kept = ", ".join(quantization.kept_float) or "none"
        table.add_row(
            "calibration",
            f"{quantization.method} on {quantization.samples} samples "
            f"({quantization.calibration}); {quantization.quantized_nodes} nodes int8; "
            f"kept in float: {kept}",
        )
        if quantization.warning:
            table.add_row("[yellow]warning[/yellow]", quantization.warning)
    baseline = manifest.baseline
    if baseline is not None:
        table.add_row(
            "vs fp32 size",
            f"{baseline.engine_bytes / 1024:,.0f} KiB vs {baseline.baseline_bytes / 1024:,.0f} "
            f"KiB ({baseline.size_ratio:.2f}x)",
        )
        for row in baseline.shapes:
            table.add_row(
                f"vs fp32 {row.shape} shape (batch {row.batch})",
                f"fp32 p50 {row.p50_ms:.3g} ms, {row.throughput:,.0f}/s; "
                f"throughput {row.throughput_ratio:.2f}x",
            )


class Progress:
    """A rich progress display: pipeline.StageReporter, one line per stage."""

    def __init__(self, console: Console) -> None:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> Progress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start(self, stage: str) -> None:
        """A stage began."""
        self.tasks[stage] = self.progress.add_task(stage, total=1)

    def done(self, stage: str, seconds: float, detail: str) -> None:
        """A stage ended after `seconds`, with the pipeline's one-line detail."""
        task = self.tasks.get(stage)
        if task is None:
            task = self.tasks[stage] = self.progress.add_task(stage, total=1)
        text = f"{stage:<10} {seconds:6.2f} s  {detail}".rstrip()
        self.progress.update(task, completed=1, description=text)
