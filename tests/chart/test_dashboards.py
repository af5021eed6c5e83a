"""The chart's Grafana dashboards as Grafana JSON: written by hack/make-dashboards.py (no drift),
a schemaVersion Grafana migrates from, unique uids and panel ids, the datasource a variable
everywhere, no namespace or ModelDeployment written in. Every expression is evaluated against a
real Prometheus in tests/integration/test_observability.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
FILES = sorted((REPO / "charts" / "modelops" / "dashboards").glob("*.json"))
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Grafana 10/11 read schemaVersion 39 natively; older ones than 36 predate datasource refs.
MIN_SCHEMA, MAX_SCHEMA = 36, 41
GRAFANA_VARIABLES = {"__rate_interval", "__interval", "__range"}
Board = dict[str, Any]


def load(path: Path) -> Board:
    board: Board = json.loads(path.read_text())
    return board


def expressions(board: Board) -> list[str]:
    """Every PromQL expression: panel targets and annotations."""
    out = [t["expr"] for p in board["panels"] for t in p["targets"]]
    out += [a["expr"] for a in board["annotations"]["list"] if "expr" in a]
    return out


def test_the_files_are_what_the_generator_writes() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "hack" / "make-dashboards.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert [p.name for p in FILES] == ["builds.json", "fleet.json", "modeldeployment.json"]


def test_uids_and_titles_are_unique() -> None:
    boards = [load(path) for path in FILES]
    assert len({b["uid"] for b in boards}) == len(boards)
    assert len({b["title"] for b in boards}) == len(boards)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_a_dashboard_is_grafana_json_with_the_datasource_as_a_variable(path: Path) -> None:
    board = load(path)
    assert isinstance(board["schemaVersion"], int)
    assert MIN_SCHEMA <= board["schemaVersion"] <= MAX_SCHEMA
    assert re.fullmatch(r"[a-z0-9-]{1,40}", board["uid"])
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    assert all(isinstance(i, int) and i > 0 for i in ids)
    for panel in board["panels"]:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["title"]
        assert panel["description"]
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))
        assert panel["targets"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE
    for item in board["annotations"]["list"]:
        if "expr" in item:
            assert item["datasource"] == DATASOURCE


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_no_namespace_or_name_is_written_into_an_expression(path: Path) -> None:
    board = load(path)
    declared = {v["name"] for v in board["templating"]["list"]} | GRAFANA_VARIABLES
    for expr in expressions(board):
        for label in ("namespace", "modeldeployment", "pod"):
            for value in re.findall(rf'\b{label}\s*=~?\s*"([^"]*)"', expr):
                assert value.startswith("$"), f"{label}={value!r} written into {expr}"
        used = set(re.findall(r"\$\{?(\w+)", expr))
        assert used <= declared, f"undeclared variables {used - declared} in {expr}"
