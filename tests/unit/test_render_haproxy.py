"""render/haproxy.py: the router's haproxy.cfg, read as text and checked by the real binary."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from modelops_operator.api import RouteTable
from modelops_operator.render.haproxy import (
    MAX_REUSE,
    SLOTS,
    RouterConfig,
    render_haproxy_config,
    slot_name,
)
from modelops_operator.render.hold import HOLD_LUA
from modelops_operator.render.router import (
    haproxy_text,
    render_router_configmap,
    render_router_deployment,
)
from tests.support.decide_world import SETTINGS
from tests.support.render_cases import make_md

HAPROXY = shutil.which("haproxy")
needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="the haproxy binary is not installed")


def sections(text: str) -> dict[str, list[str]]:
    """'backend grpc' -> its directive lines (stripped)."""
    found: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if line and not line.startswith(" "):
            current = line.strip()
            found[current] = []
        elif line.strip():
            found[current].append(line.strip())
    return found


TEXT = render_haproxy_config(RouterConfig())
SECTIONS = sections(TEXT)


def test_every_backend_has_sixteen_disabled_parked_slots() -> None:
    for backend in ("http", "grpc", "metrics"):
        (template,) = [d for d in SECTIONS[f"backend {backend}"] if d.startswith("server-template")]
        assert template.split()[1:4] == ["rev", str(SLOTS), "127.0.0.1:1"]
        assert "disabled" in template.split()
    assert SLOTS == 16
    assert (slot_name(1), slot_name(16)) == ("rev1", "rev16")


def test_retries_only_when_nothing_was_sent() -> None:
    defaults = SECTIONS["defaults"]
    retry_on = [d for d in defaults if d.startswith("retry-on")]
    assert retry_on == ["retry-on conn-failure"]
    assert "retries 3" in defaults
    assert not any(
        "retry-on" in d for name, ds in SECTIONS.items() if name != "defaults" for d in ds
    )


def test_http_backend_closes_server_connections_after_each_response() -> None:
    http = SECTIONS["backend http"]
    assert "option http-server-close" in http
    assert "balance roundrobin" in http
    assert "option httpchk GET /v2/health/ready" in http
    assert "option http-server-close" not in SECTIONS["backend grpc"]  # HTTP/2 streams share one


def test_grpc_backend_speaks_h2_and_reuses_connections_a_bounded_number_of_times() -> None:
    (template,) = [d for d in SECTIONS["backend grpc"] if d.startswith("server-template")]
    assert "proto h2" in template
    assert f"max-reuse {MAX_REUSE}" in template
    assert MAX_REUSE == 16
    assert "proto h2" in next(d for d in SECTIONS["frontend grpc"] if d.startswith("bind"))


def test_grpc_errors_are_counted_per_slot_in_a_stick_table() -> None:
    grpc = SECTIONS["backend grpc"]
    (table,) = [d for d in grpc if d.startswith("stick-table")]
    assert re.fullmatch(
        rf"stick-table type string len 16 size {SLOTS * 4} store gpc0,http_req_cnt", table
    )
    assert "http-response track-sc0 srv_name" in grpc
    (count,) = [d for d in grpc if "sc-inc-gpc0" in d]
    assert "res.hdr(grpc-status) -m found" in count
    assert "!{ res.hdr(grpc-status) -m str 0 }" in count  # status 0 is a success


def test_stats_frontend_serves_health_and_prometheus() -> None:
    stats = SECTIONS["frontend stats"]
    assert "bind :8404" in stats
    assert "monitor-uri /healthz" in stats
    assert "http-request use-service prometheus-exporter if { path /metrics }" in stats


def test_config_follows_the_router_settings() -> None:
    config = RouterConfig(
        bind="127.0.0.1",
        http_port=18000,
        admin_socket="/tmp/x.sock",
        request_timeout_seconds=42,
        slots=3,
        hard_stop_seconds=7,
    )
    text = render_haproxy_config(config)
    assert "bind 127.0.0.1:18000" in text
    assert "stats socket /tmp/x.sock mode 660 level admin" in text
    assert "timeout server 42s" in text
    assert "timeout client 42s" in text
    assert "hard-stop-after 7s" in text
    assert "server-template rev 3 " in text
    assert "size 12 " in text


def test_the_router_configmap_text_waits_for_requests_in_flight() -> None:
    assert "hard-stop-after 30s" in haproxy_text()


# --- the real binary -------------------------------------------------------------------------
def check(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`haproxy -c` (zero-warning mode) on this configuration."""
    path = tmp_path / "haproxy.cfg"
    path.write_text(text)
    assert HAPROXY is not None
    return subprocess.run(
        [HAPROXY, "-c", "-dW", "-f", str(path)], capture_output=True, text=True, timeout=30
    )


@needs_haproxy
@pytest.mark.parametrize(
    "config",
    [RouterConfig(), RouterConfig(bind="127.0.0.1", slots=1, admin_socket="/tmp/admin.sock")],
    ids=["pod", "local"],
)
def test_haproxy_accepts_the_config_without_warnings(config: RouterConfig, tmp_path: Path) -> None:
    result = check(render_haproxy_config(config), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_haproxy
def test_haproxy_check_would_catch_a_broken_config(tmp_path: Path) -> None:
    """The check above can fail: a bad retry-on keyword is refused."""
    broken = TEXT.replace("retry-on conn-failure", "retry-on conn-failure never-sent")
    result = check(broken, tmp_path)
    assert result.returncode != 0
    assert "never-sent" in result.stdout + result.stderr


def test_frontends_hold_requests_only_while_their_backend_has_no_usable_server() -> None:
    held = sections(render_haproxy_config(RouterConfig(lua_file="/etc/hold.lua")))
    assert "lua-load /etc/hold.lua" in held["global"]
    for backend in ("http", "grpc"):
        lines = held[f"frontend {backend}"]
        assert f"http-request lua.hold {backend} if {{ nbsrv({backend}) eq 0 }}" in lines
        assert "http-response lua.held if { var(txn.modelops_held) -m found }" in lines
    assert not any("lua" in line for line in SECTIONS["frontend http"])  # no file, no hold
    assert "lua-load" in haproxy_text()


@needs_haproxy
def test_haproxy_loads_the_hold_action_without_warnings(tmp_path: Path) -> None:
    lua = tmp_path / "hold.lua"
    lua.write_text(HOLD_LUA)
    result = check(render_haproxy_config(RouterConfig(lua_file=str(lua))), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lua.write_text(HOLD_LUA.replace("core.register_action", "core.register_actionz", 1))
    broken = check(render_haproxy_config(RouterConfig(lua_file=str(lua))), tmp_path)
    assert broken.returncode != 0


def test_router_pods_are_ready_within_a_second_of_haproxy_and_the_table() -> None:
    pod = render_router_deployment(make_md(), SETTINGS)["spec"]["template"]["spec"]
    periods = {c["name"]: c["readinessProbe"]["periodSeconds"] for c in pod["containers"]}
    assert periods == {"haproxy": 1, "agent": 1}
    data = render_router_configmap(make_md(), RouteTable())["data"]
    assert data["hold.lua"] == HOLD_LUA
    assert "lua-load /usr/local/etc/modelops/hold.lua" in data["haproxy.cfg"]
