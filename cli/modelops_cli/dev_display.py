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
    built = "cached (engine-key hit)" if result.cached else f"{build_seconds:.1f} s"
    table.add_row("build", built)
    table.add_row("first inference", f"{infer_ms:.1f} ms over HTTP (binary tensors)")
    return table


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
