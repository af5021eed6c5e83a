"""PURE: the HAProxy configuration of a ModelDeployment's traffic router.

The configuration is static per ModelDeployment (it changes only with the router settings): a
fixed set of server slots per backend, all disabled. The router agent fills the slots at run
time through HAProxy's admin socket (address, weight, state), one slot per revision, so weights
change without a reload and without dropping a connection.

- HTTP (port 8000): each request is balanced on its own (weighted round robin), also on one
  keep-alive client connection; the connection to the revision's Service is closed after each
  response, so the next request opens a new one and the Service (kube-proxy) balances it too.
  HTTP/1.1 has no way for a draining Triton to say "no more requests on this connection": a
  pooled connection could take a request at the moment Triton closes it, and a request that was
  sent is never retried. Measured: pooling saved 0.1-0.2 ms per request and failed one request
  of a keep-alive client in a drain test run.
- gRPC (port 8001, HTTP/2 cleartext): each call (stream) is balanced on its own; server
  connections are reused at most MAX_REUSE times (purged after 1 s idle), so they move to other
  pods often, also away from a pod that drains.
- Retries happen only when the connection to a revision failed and nothing was sent.
- While a backend has no usable server (scale to zero: the revision's pod is starting), the
  hold action (render/hold.py, `lua_file`) keeps the request until one is, and tells the agent.
- gRPC calls that fail in a trailers-only response (status in the headers) are counted per slot
  in the `grpc_errors` stick table: HTTP/2 says 200 for them, and the router must still see them.
- The header that opens Triton's admin APIs (render/revision.py, ADMIN_HEADER) is dropped from
  every client request, HTTP and gRPC (its `triton-grpc-protocol-` metadata key), before
  anything else sees it: clients never reach those APIs through the router.
- Port 8002 forwards Triton's metrics of the revision the agent marks as stable.
- Port 8404 is HAProxy's own Prometheus exporter (`/metrics`) and `/healthz`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .revision import ADMIN_HEADER, GRPC_ADMIN_HEADER

HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002
STATS_PORT = 8404
AGENT_PORT = 8405
SLOTS = 16
SLOT_PREFIX = "rev"
BACKENDS = ("http", "grpc", "metrics")
GRPC_ERRORS_TABLE = "grpc_errors"
MAX_REUSE = 16
SOCKET_DIR = "/var/run/haproxy"
ADMIN_SOCKET = f"{SOCKET_DIR}/admin.sock"
# A placeholder address for empty slots: disabled servers are never connected to.
PARKED_ADDRESS = "127.0.0.1:1"


@dataclass(frozen=True)
class RouterConfig:
    """What shapes haproxy.cfg: where it listens, its socket, its timeouts."""

    bind: str = ""  # "" listens on every address (the pod); tests bind 127.0.0.1
    http_port: int = HTTP_PORT
    grpc_port: int = GRPC_PORT
    metrics_port: int = METRICS_PORT
    stats_port: int = STATS_PORT
    admin_socket: str = ADMIN_SOCKET
    request_timeout_seconds: int = 300
    slots: int = SLOTS
    hard_stop_seconds: int = 30
    lua_file: str = ""  # the hold action (render/hold.py); "" runs without it


def slot_name(index: int) -> str:
    """The name HAProxy's server-template gives slot `index` (1-based)."""
    return f"{SLOT_PREFIX}{index}"


def render_haproxy_config(config: RouterConfig) -> str:
    """haproxy.cfg text for one router."""
    bind = config.bind
    timeout = f"{config.request_timeout_seconds}s"
    check = "check inter 1s fall 2 rise 1"
    lua = [f"  lua-load {config.lua_file}"] if config.lua_file else []
    lines = [
        "global",
        f"  stats socket {config.admin_socket} mode 660 level admin",
        "  stats timeout 30s",
        # A soft stop (SIGUSR1, the pod's preStop) waits this long for requests in flight.
        f"  hard-stop-after {config.hard_stop_seconds}s",
        "  log stdout format raw local0 notice",
        *lua,
        "",
        "defaults",
        "  mode http",
        "  log global",
        "  option dontlognull",
        "  timeout connect 2s",
        f"  timeout client {timeout}",
        f"  timeout server {timeout}",
        "  timeout http-request 30s",
        "  timeout http-keep-alive 60s",
        # Retries and redispatch only when nothing was sent (HAProxy's conn-failure).
        "  retry-on conn-failure",
        "  retries 3",
        "  option redispatch 1",
        "",
        "frontend http",
        f"  bind {bind}:{config.http_port}",
        *_drop_admin_key(),
        *_hold("http", config),
        "  default_backend http",
        "",
        "frontend grpc",
        f"  bind {bind}:{config.grpc_port} proto h2",
        *_drop_admin_key(),
        *_hold("grpc", config),
        "  default_backend grpc",
        "",
        "frontend metrics",
        f"  bind {bind}:{config.metrics_port}",
        *_drop_admin_key(),
        "  default_backend metrics",
        "",
        "frontend stats",
        f"  bind {bind}:{config.stats_port}",
        "  monitor-uri /healthz",
        "  http-request use-service prometheus-exporter if { path /metrics }",
        "",
        "backend http",
        "  balance roundrobin",
        "  option http-server-close",
        "  option httpchk GET /v2/health/ready",
        f"  server-template {SLOT_PREFIX} {config.slots} {PARKED_ADDRESS} disabled {check}",
        "",
        "backend grpc",
        "  balance roundrobin",
        f"  stick-table type string len 16 size {config.slots * 4} store gpc0,http_req_cnt",
        "  http-response track-sc0 srv_name",
        "  http-response sc-inc-gpc0(0) if { res.hdr(grpc-status) -m found }"
        " !{ res.hdr(grpc-status) -m str 0 }",
        f"  server-template {SLOT_PREFIX} {config.slots} {PARKED_ADDRESS} disabled proto h2"
        f" max-reuse {MAX_REUSE} pool-purge-delay 1s",
        "",
        "backend metrics",
        "  balance roundrobin",
        "  option http-server-close",
        f"  server-template {SLOT_PREFIX} {config.slots} {PARKED_ADDRESS} disabled",
        "",
    ]
    return "\n".join(lines)


def _drop_admin_key() -> list[str]:
    """Drop the header (HTTP) and metadata key (gRPC) that open Triton's admin APIs."""
    return [f"  http-request del-header {name}" for name in (ADMIN_HEADER, GRPC_ADMIN_HEADER)]


def _hold(backend: str, config: RouterConfig) -> list[str]:
    """The hold action while `backend` has no usable server (HAProxy checks, Lua waits)."""
    if not config.lua_file:
        return []
    return [
        f"  http-request lua.hold {backend} if {{ nbsrv({backend}) eq 0 }}",
        "  http-response lua.held if { var(txn.modelops_held) -m found }",
    ]
