#!/usr/bin/env python3
"""Draw the chart's dashboards from a real run's Prometheus data, for docs/observability.md.

No Grafana here: the panels are drawn with matplotlib from the series the integration test read
from its real Prometheus (same expressions, same legends, one picture per dashboard):

    MODELOPS_DASHBOARD_DUMP=/tmp/dump.json .venv/bin/python -m pytest \
        tests/integration/test_observability.py -k panel
    .venv/bin/pip install matplotlib   # a docs tool only, not a dependency of modelops
    .venv/bin/python hack/render-dashboards.py /tmp/dump.json docs/images
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

TITLES = {
    "fleet": "modelops / Fleet",
    "modeldeployment": "modelops / ModelDeployment (default/m)",
    "builds": "modelops / Builds",
}


def legend(template: str, labels: dict[str, str]) -> str:
    """Grafana's legendFormat: {{label}} replaced by the series' value."""
    return re.sub(r"\{\{(\w+)\}\}", lambda m: labels.get(m.group(1), ""), template) or "value"


def render(dump: dict[str, Any], out: Path) -> list[Path]:
    """One PNG per dashboard: its panels in a grid, two per row, in the dashboard's order."""
    began = float(dump["began"])
    by_board: dict[str, dict[str, list[tuple[str, list[Any]]]]] = defaultdict(dict)
    for item in dump["panels"]:
        panel = by_board[item["board"]].setdefault(item["title"], [])
        for series in item["series"]:
            panel.append((legend(item["legend"], series["metric"]), series["values"]))
    written = []
    for board, panels in by_board.items():
        rows = math.ceil(len(panels) / 2)
        figure, axes = plt.subplots(rows, 2, figsize=(14, 3.0 * rows), squeeze=False)
        for axis, (title, lines) in zip(axes.flat, panels.items(), strict=False):
            for name, values in lines:
                xs = [float(t) - began for t, _ in values]
                ys = [float(v) for _, v in values]
                axis.plot(xs, ys, label=name, linewidth=1.2)
            axis.set_title(title, fontsize=10)
            axis.set_xlabel("seconds into the run", fontsize=8)
            axis.tick_params(labelsize=7)
            axis.grid(alpha=0.3)
            if lines:
                axis.legend(fontsize=6, loc="best")
        for axis in list(axes.flat)[len(panels) :]:
            axis.axis("off")
        figure.suptitle(f"{TITLES.get(board, board)}, drawn from a real run's Prometheus data")
        figure.tight_layout()
        path = out / f"dashboard-{board}.png"
        figure.savefig(path, dpi=80)
        plt.close(figure)
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    """render-dashboards.py DUMP.json OUT_DIR"""
    if len(argv) != 2:
        print(__doc__)
        return 2
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for path in render(json.loads(Path(argv[0]).read_text()), out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
