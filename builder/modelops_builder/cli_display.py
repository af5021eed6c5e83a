"""What a human sees from `modelops-build MODEL`: stage progress on stderr, a table at the end."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from modelops_contract.request import BuildSummary

if TYPE_CHECKING:
    from .pipeline import BuildResult

STDERR = Console(stderr=True)


class RichReporter:
    """A StageReporter drawing one spinner line per stage on stderr."""

    def __init__(self, computed_sha: str | None) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=STDERR,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}
        if computed_sha:
            STDERR.print(f"sha256 (computed): {computed_sha}")

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for stage, task in self.tasks.items():
            if not self.progress.tasks[task].finished:
                self.progress.update(task, description=f"[red]x {stage}", total=1, completed=1)
        self.progress.stop()

    def start(self, stage: str) -> None:
        """Show the stage as running."""
        self.tasks[stage] = self.progress.add_task(f"{stage} ...", total=None)

    def done(self, stage: str, seconds: float, detail: str) -> None:
        """Mark the stage done with its detail."""
        task = self.tasks[stage]
        self.progress.update(
            task,
            description=f"[green]ok[/] {stage:<9} {detail} ({seconds:.2f}s)",
            total=1,
            completed=1,
        )


def show_result(result: BuildResult, computed_sha: str | None) -> None:
    """The summary table on stdout."""
    summary, manifest = result.summary, result.manifest
    table = Table(title="engine " + ("(cached: zero build time)" if result.cached else "built"))
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("key", summary.key or "")
    table.add_row("uri", summary.uri or "")
    table.add_row("engine", f"{manifest.engine} ({manifest.precision})")
    if summary.fallback:
        table.add_row("fallback", summary.fallback)
    if computed_sha:
        table.add_row("sha256", computed_sha)
    for sig in manifest.inputs:
        table.add_row(f"input {sig.name}", f"{sig.data_type} {sig.dims}")
    for sig in manifest.outputs:
        table.add_row(f"output {sig.name}", f"{sig.data_type} {sig.dims}")
    if manifest.accuracy:
        acc = manifest.accuracy
        bounds = f" (atol {acc.atol:g}, rtol {acc.rtol:g})" if acc.atol is not None else ""
        table.add_row(
            "accuracy", f"max abs {acc.max_abs_error:.3g}, max rel {acc.max_rel_error:.3g}{bounds}"
        )
        if acc.agreement is not None:
            table.add_row(f"{acc.metric} with fp32", f"{acc.agreement:.2%} of {acc.samples}")
        if acc.accuracy is not None:
            table.add_row(
                "accuracy (labels)", f"{acc.accuracy:.2%}, fp32 {acc.baseline_accuracy:.2%}"
            )
    if manifest.baseline:
        base = manifest.baseline
        ratios = ", ".join(f"{s.shape} {s.throughput_ratio:.2f}x" for s in base.shapes)
        table.add_row("vs fp32", f"size {base.size_ratio:.2f}x, throughput {ratios}")
    for point in manifest.profile:
        table.add_row(
            f"batch {point.batch}",
            f"p50 {point.p50_ms:.3f} ms  p99 {point.p99_ms:.3f} ms"
            f"  {point.throughput:,.0f}/s" + ("" if point.stable else "  (unstable)"),
        )
    if not result.cached:
        stages = ", ".join(f"{k} {v:.2f}s" for k, v in manifest.stage_seconds.items())
        table.add_row("stages", stages)
    Console().print(table)


def show_failure(summary: BuildSummary, code: int) -> None:
    """The reason and message on stderr."""
    STDERR.print(
        f"[red bold]build failed[/] ({escape(summary.reason or '')}, exit {code}): "
        + escape(summary.message or ""),
        highlight=False,
    )
