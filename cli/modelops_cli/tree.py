"""Drawing what `describe` found: the `get` tree and the `list` table (rich), in 80 columns."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

Obj = dict[str, Any]
PHASE_STYLE = {
    "Ready": "green",
    "RollingOut": "cyan",
    "Building": "cyan",
    "Pending": "yellow",
    "Idle": "blue",
    "Degraded": "yellow",
    "RolledBack": "red",
    "Failed": "red",
}


def _phase(phase: str) -> str:
    return f"[{PHASE_STYLE.get(phase, 'white')}]{escape(phase)}[/]"


def _short(text: str | None, length: int = 12) -> str:
    if not text:
        return "-"
    text = text.removeprefix("sha256:")
    return escape(text[:length]) + ("…" if len(text) > length else "")


def _num(value: Any, unit: str = "", digits: int = 1) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}{unit}"


def _engine(node: Tree, engine: Obj) -> None:
    built = engine["built"] == "True"
    state = f"Built ({engine['from']})" if built else escape(str(engine["reason"] or "not built"))
    head = node.add(
        f"[bold]engine[/] {escape(str(engine['engine'] or '-'))}"
        f" {escape(str(engine['precision'] or '-'))}  key {_short(engine['key'])}  {state}"
    )
    stages = []
    for stage in engine["stages"]:
        if stage["job"] is None:
            continue  # finished Jobs are removed (a source Job at once, a build Job by TTL)
        took = "" if stage["seconds"] is None else f" in {_num(stage['seconds'], 's', 0)}"
        stages.append(f"{stage['stage']} {stage['state']}{took}")
    head.add("Jobs: " + (" · ".join(stages) or "none kept"))
    latency = engine["latencyMs"] or {}
    if engine["maxAbsError"] is not None or latency or engine["throughput"] is not None:
        error = "-" if engine["maxAbsError"] is None else engine["maxAbsError"]
        head.add(
            f"gate: max abs err {error}"
            f" · p50 {_num(latency.get('p50'), ' ms')} p99 {_num(latency.get('p99'), ' ms')}"
            f" · {_num(engine['throughput'], '/s', 0)}"
        )
    if not built and engine["message"]:
        head.add(f"[yellow]{escape(str(engine['message']))}[/]")
    if engine["uri"]:
        head.add(f"store: {escape(str(engine['uri']))}")


def _revision(node: Tree, row: Obj) -> None:
    weight = "-" if row["weight"] is None else f"{row['weight']}%"
    style = {"candidate": "cyan", "current": "green"}.get(row["state"], "dim")
    head = node.add(
        f"[bold]revision {row['revision']}[/] [{style}]{escape(row['state'])}[/]"
        f"  weight {weight}  {row['ready']}/{row['desired']} ready"
        f"  sig {_short(row['signature'])}"
    )
    checked = row["validation"]
    if checked is not None:
        verdict = "[green]passed[/]" if checked["passed"] else "[red]failed[/]"
        head.add(
            f"validation: {verdict} (max abs err {checked['maxAbsError']})"
            + (f" {escape(str(checked['message']))}" if not checked["passed"] else "")
        )
    for pod in row["pods"]:
        _pod(head, pod)


def _pod(node: Tree, pod: Obj) -> None:
    ready = "[green]ready[/]" if pod["ready"] else "[yellow]not ready[/]"
    extra = ""
    if pod["waiting"]:
        extra += f"  [red]{escape(pod['waiting'])}[/]"
    if pod["lastTermination"]:
        extra += f"  last exit {escape(pod['lastTermination'])}"
    node.add(
        f"pod {escape(pod['name'])}  {ready}  restarts {pod['restarts']}"
        f"  node {escape(pod['node'])}{extra}"
    )


def _analysis(node: Tree, found: Obj, steering: Obj) -> None:
    validated = "validated" if found["validated"] else "validating"
    head = node.add(
        f"[bold]analysis[/] revision {found['revision']} step {found['step']} {validated}"
        f" · passes {found['passes']} failures {found['failures']}/{found['failureThreshold']}"
    )
    if found["lastAnalysis"]:
        head.add(f"last: {escape(found['lastAnalysis'])}")
    if found["message"]:
        head.add(escape(found["message"]))
    held = [f"{k} {v}" for k, v in steering.items() if v is not None and k in ("pause", "weight")]
    if held:
        head.add(f"[yellow]steered: {escape(', '.join(held))}[/]")


def _metrics(node: Tree, metrics: Obj | None, traffic: Obj | None) -> None:
    if traffic:
        shares = " / ".join(f"r{w['revision']} {w['weight']}%" for w in traffic.get("weights", []))
        applied = f" (applied: {escape(str(traffic['applied']))})" if traffic.get("applied") else ""
        shares = shares or "(split by replica counts)"
        node.add(f"[bold]traffic[/] {escape(str(traffic.get('mode')))} {shares}{applied}")
    if metrics:
        errors = metrics.get("errorRate")
        node.add(
            f"[bold]triton[/] {_num(metrics.get('inferencesPerSecond'), ' inf/s')}"
            f" · p99 {_num(metrics.get('p99LatencyMs'), ' ms')}"
            f" · queue {_num(metrics.get('avgQueueMicroseconds'), ' us', 0)}"
            f" · errors {_num(None if errors is None else errors * 100, '%', 2)}"
        )


def render_tree(found: Obj) -> Tree:
    """The `get` tree of one described ModelDeployment."""
    root = Tree(
        f"[bold]{escape(found['namespace'] or '')}/{escape(found['name'])}[/]"
        f"  {_phase(found['phase'])}  gen {found['generation']}  age {found['age']}"
    )
    root.add(f"model {escape(str(found['model']))}")
    if found["message"] and found["phase"] != "Ready" and not found["analysis"]:
        root.add(f"[yellow]{escape(found['message'])}[/]")
    _engine(root, found["engine"])
    for row in found["revisions"]:
        _revision(root, row)
    if found["router"]:
        router = root.add("[bold]router[/]")
        for pod in found["router"]:
            _pod(router, pod)
    if found["analysis"]:
        _analysis(root, found["analysis"], found["steering"])
    _metrics(root, found["metrics"], found["traffic"])
    scale = found["autoscaler"]
    if scale:
        root.add(f"[bold]autoscaler[/] {scale['from']} -> {scale['to']}: {escape(scale['reason'])}")
    idle = found.get("idle")
    if idle:
        parts = [f"idle for {idle['since']}" if idle["since"] else "awake"]
        if idle["wokeAt"]:
            parts.append(f"woke {idle['wokeAt']} ago")
        if idle["coldStartSeconds"] is not None:
            parts.append(f"cold start {_num(idle['coldStartSeconds'], ' s')}")
        root.add("[bold]scale to zero[/] " + " · ".join(parts))
    if found["events"]:
        events = root.add("[bold]events[/]")
        for e in found["events"]:
            style = "red" if e["type"] == "Warning" else "dim"
            events.add(
                f"{e['age']} [{style}]{escape(str(e['reason']))}[/] {escape(str(e['message']))}"
            )
    return root


def last_decision(md: Obj) -> str:
    """The newest of the last revision change and the last scaling decision."""
    status = md.get("status") or {}
    history = status.get("history") or []
    moves = [(h.get("time") or "", f"r{h['revision']} {h['state']}") for h in history[-1:]]
    scale = status.get("lastScale")
    if scale:
        moves.append((scale.get("time") or "", f"scaled {scale['from']}->{scale['to']}"))
    return max(moves)[1] if moves else "-"


def render_list(items: list[Obj], ages: list[str], every_namespace: bool) -> Table:
    """`list`: like `kubectl get md`, plus the weights and the last decision."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    columns = ["NAMESPACE"] if every_namespace else []
    columns += ["NAME", "PHASE", "READY", "REV", "WEIGHTS", "LAST DECISION", "AGE"]
    for column in columns:
        table.add_column(column, overflow="fold")
    for md, when in zip(items, ages, strict=True):
        status = md.get("status") or {}
        revision = status.get("revision") or {}
        rev = str(revision.get("current") or "-")
        if revision.get("candidate") is not None:
            rev += f"->{revision['candidate']}"
        weights = (status.get("traffic") or {}).get("weights") or []
        shares = " ".join(f"r{w['revision']}:{w['weight']}" for w in weights) or "-"
        row = [md["metadata"].get("namespace") or ""] if every_namespace else []
        row += [
            escape(md["metadata"]["name"]),
            _phase(str(status.get("phase") or "Pending")),
            str(status.get("ready") or "-"),
            rev,
            shares,
            escape(last_decision(md)),
            when,
        ]
        table.add_row(*row)
    return table
