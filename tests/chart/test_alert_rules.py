"""The alert rules with the real promtool (Debian's prometheus package, hack/install-prometheus.sh):
they parse, every alert fires and stays silent in tests/chart/alerts/modelops-alerts.test.yaml,
and every alert says what a person on call needs (summary, description naming the
ModelDeployment, a runbook section that exists)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "charts" / "modelops" / "rules" / "modelops-alerts.yaml"
TESTS = REPO / "tests" / "chart" / "alerts" / "modelops-alerts.test.yaml"
RUNBOOK = REPO / "docs" / "observability.md"
# Alerts about the operator process or the engine server, not about one ModelDeployment.
FLEET_ALERTS = {"ModelopsNoLeader", "ModelopsWatchStale", "ModelopsEngineServerDown"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool not found: run `bash hack/install-prometheus.sh` (hack/test.sh does)"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, check=False)


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_the_rules_file_parses() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    groups = yaml.safe_load(RULES.read_text())["groups"]
    assert f"SUCCESS: {sum(len(g['rules']) for g in groups)} rules found" in result.stdout


def test_every_alert_fires_and_stays_silent_in_the_promtool_tests() -> None:
    result = promtool("test", "rules", str(TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    cases = yaml.safe_load(TESTS.read_text())["tests"]
    fired: set[str] = set()
    silent: set[str] = set()
    for case in cases:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert fired == names, f"alerts never shown firing: {names - fired}"
    assert silent == names, f"alerts never shown silent: {names - silent}"


def _anchor(heading: str) -> str:
    return re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: rule["alert"])
def test_each_alert_has_a_summary_a_description_and_a_runbook(rule: dict[str, Any]) -> None:
    annotations = rule["annotations"]
    assert annotations["summary"]
    assert rule["labels"]["severity"] in ("warning", "critical")
    if rule["alert"] not in FLEET_ALERTS:
        assert "{{ $labels.modeldeployment }}" in annotations["description"]
        assert "{{ $labels.namespace }}" in annotations["description"]
    anchors = {
        _anchor(line.lstrip("#").strip())
        for line in RUNBOOK.read_text().splitlines()
        if line.startswith("### ")
    }
    anchor = annotations["runbook_url"].rsplit("#", 1)[1]
    assert anchor == rule["alert"].lower()
    assert anchor in anchors, f"docs/observability.md has no runbook section {rule['alert']}"
