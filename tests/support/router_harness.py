"""Real HAProxy routers and a stand-in for kube-proxy, on loopback, for router and drain tests.

`ServiceProxy` plays a revision's Service the way kube-proxy does: it balances *connections*
(TCP mode) across the revision's pods, and removing an endpoint stops new connections to that
pod while established ones carry on. `Router` is the real router: HAProxy started from the
operator's own haproxy.cfg, with the real router agent applying route tables to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from modelops_builder.triton_local import free_port
from modelops_operator.api.routes import Route, RouteTable
from modelops_operator.render.haproxy import RouterConfig, render_haproxy_config
from modelops_operator.render.hold import HOLD_LUA
from modelops_operator.router.admin import HAProxyAdmin
from modelops_operator.router.agent import Endpoint, RouterAgent
from modelops_operator.router.serve import AgentOptions, serve_agent
from tests.support.triton_models import INPUT_NAME, WIDTH


def _wait_for_socket(path: Path, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise RuntimeError(f"haproxy exited: {process.stdout.read().decode()[-2000:]}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            raise RuntimeError(f"haproxy did not open {path}")
        time.sleep(0.02)


def _admin(path: Path, command: str) -> str:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    return b"".join(chunks).decode()


# Endpoint slots of a ServiceProxy: pods added over its life (the drain bench adds many).
SERVICE_SLOTS = 64


def _target(server: Any, kind: str) -> tuple[str, int]:
    url = {"http": server.http_url, "grpc": server.grpc_url}.get(kind)
    address = url or server.metrics_url.removeprefix("http://").split("/")[0]
    host, port = address.rsplit(":", 1)
    return host, int(port)


@dataclass
class ServiceProxy:
    """One revision Service: connection balancing over pods (tcp mode), like kube-proxy."""

    name: str
    pods: Mapping[str, Any]  # pod name -> TritonProcess, the endpoints at start
    workdir: Path
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    slots: dict[str, int] = field(default_factory=dict)
    balance: str = "roundrobin"  # "random" picks as kube-proxy's iptables rules do

    @property
    def socket(self) -> Path:
        return self.workdir / f"{self.name}.sock"

    def start(self) -> ServiceProxy:
        self.ports = {kind: free_port() for kind in ("http", "grpc", "metrics")}
        lines = [
            "global",
            f"  stats socket {self.socket} mode 600 level admin",
            "defaults",
            "  mode tcp",
            "  timeout connect 2s",
            "  timeout client 300s",
            "  timeout server 300s",
            # kube-proxy does not retry a refused connection on another pod.
            "  retries 0",
        ]
        for kind, port in self.ports.items():
            lines += [f"listen {kind}", f"  bind 127.0.0.1:{port}", f"  balance {self.balance}"]
            lines.append(f"  server-template pod 1-{SERVICE_SLOTS} 127.0.0.1:1 disabled")
        config = self.workdir / f"{self.name}.cfg"
        config.write_text("\n".join(lines) + "\n")
        self.process = subprocess.Popen(
            ["haproxy", "-db", "-f", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        _wait_for_socket(self.socket, self.process)
        for pod, server in self.pods.items():
            self.add_endpoint(pod, server)
        return self

    def add_endpoint(self, pod: str, server: Any) -> None:
        """A new ready pod: new connections may go to it."""
        slot = len(self.slots) + 1
        if slot > SERVICE_SLOTS:
            raise RuntimeError(f"{self.name}: more than {SERVICE_SLOTS} endpoints")
        self.slots[pod] = slot
        for kind in self.ports:
            host, port = _target(server, kind)
            _admin(self.socket, f"set server {kind}/pod{slot} addr {host} port {port}")
            _admin(self.socket, f"set server {kind}/pod{slot} state ready")

    def remove_endpoint(self, pod: str) -> None:
        """The pod left the Service's endpoints: no new connections, open ones carry on."""
        for kind in self.ports:
            _admin(self.socket, f"set server {kind}/pod{self.slots[pod]} state maint")

    def endpoint(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.ports["http"], self.ports["grpc"], self.ports["metrics"])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@dataclass
class Router:
    """HAProxy from the operator's haproxy.cfg, driven by the real router agent."""

    services: dict[str, ServiceProxy]
    namespace: str = "ml"
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="router-")))
    config: RouterConfig | None = None
    process: subprocess.Popen[bytes] | None = None
    agent: RouterAgent | None = None
    version: int = 0

    def start(self) -> Router:
        self.config = RouterConfig(
            bind="127.0.0.1",
            http_port=free_port(),
            grpc_port=free_port(),
            metrics_port=free_port(),
            stats_port=free_port(),
            admin_socket=str(self.workdir / "admin.sock"),
            lua_file=str(self.workdir / "hold.lua"),
        )
        (self.workdir / "hold.lua").write_text(HOLD_LUA)
        path = self.workdir / "haproxy.cfg"
        path.write_text(render_haproxy_config(self.config))
        self.process = subprocess.Popen(
            ["haproxy", "-db", "-f", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        _wait_for_socket(Path(self.config.admin_socket), self.process)
        self.agent = RouterAgent(HAProxyAdmin(self.config.admin_socket), self.resolve)
        return self

    async def resolve(self, service: str, namespace: str) -> Endpoint | None:
        """The Service stand-in's address, as cluster DNS would give the Service's IP."""
        proxy = self.services.get(service)
        return proxy.endpoint() if proxy is not None else None

    @property
    def http_url(self) -> str:
        assert self.config is not None
        return f"127.0.0.1:{self.config.http_port}"

    @property
    def grpc_url(self) -> str:
        assert self.config is not None
        return f"127.0.0.1:{self.config.grpc_port}"

    async def route(self, weights: Mapping[str, int]) -> None:
        """Apply a new table {service: weight} (revision numbers from the `-r<N>` suffix)."""
        assert self.agent is not None
        self.version += 1
        routes = [
            Route(revision=int(service.rsplit("-r", 1)[1]), service=service, weight=weight)
            for service, weight in weights.items()
        ]
        self.agent.offer(RouteTable(version=self.version, namespace=self.namespace, routes=routes))
        assert await self.agent.sync(), "the router did not apply the table"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@contextlib.contextmanager
def services(
    workdir: Path, layout: Mapping[str, Mapping[str, Any]]
) -> Iterator[dict[str, ServiceProxy]]:
    """Start a ServiceProxy per {service: {pod: triton}}; stop them all."""
    started: dict[str, ServiceProxy] = {}
    try:
        for name, pods in layout.items():
            started[name] = ServiceProxy(name, pods, workdir).start()
        yield started
    finally:
        for proxy in started.values():
            proxy.stop()


@contextlib.asynccontextmanager
async def router(proxies: dict[str, ServiceProxy]) -> AsyncIterator[Router]:
    """A started Router over the given Services; stopped at the end."""
    running = Router(proxies).start()
    try:
        yield running
    finally:
        running.stop()


@dataclass
class FedRouter:
    """A Router whose agent runs as in a router pod: `serve_agent`, long-polling the operator's
    route feed, with its /ready and /metrics on `agent_port`."""

    router: Router
    agent_port: int

    @property
    def figures_url(self) -> str:
        return f"http://127.0.0.1:{self.agent_port}/metrics"


@contextlib.asynccontextmanager
async def fed_router(
    proxies: dict[str, ServiceProxy], routes_url: str, route_token: str
) -> AsyncIterator[FedRouter]:
    """HAProxy and the real agent process loop fed by `routes_url` (with the router's token, as
    its pod gets it); stopped at the end."""
    running = Router(proxies).start()
    assert running.config is not None
    stop = asyncio.Event()
    port = free_port()
    options = AgentOptions(
        admin_socket=running.config.admin_socket,
        routes_url=routes_url,
        boot_file=None,
        route_token=route_token,
        host="127.0.0.1",
        port=port,
    )
    task = asyncio.create_task(serve_agent(options, stop, running.resolve))
    try:
        yield FedRouter(running, port)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        running.stop()


def count_by(values: Sequence[Any]) -> dict[Any, int]:
    """value -> occurrences."""
    out: dict[Any, int] = {}
    for value in values:
        out[value] = out.get(value, 0) + 1
    return out


async def settle(seconds: float = 0.2) -> None:
    """Let HAProxy's health checks and slot changes take effect."""
    await asyncio.sleep(seconds)


def http_answers(
    url: str, count: int, keep_alive: bool = True, model: str = "m", batch: int = 1
) -> list[Any]:
    """The scale each request saw, or the error text."""
    x = np.ones((batch, WIDTH), np.float32)
    client = httpclient.InferenceServerClient(url) if keep_alive else None
    out: list[Any] = []
    for _ in range(count):
        one = client or httpclient.InferenceServerClient(url)
        tensor = httpclient.InferInput(INPUT_NAME, [batch, WIDTH], "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
        try:
            result = one.infer(model, [tensor])
            out.append(float(result.as_numpy("y")[0][0]))
        except Exception as exc:
            out.append(f"error: {exc}")
        finally:
            if client is None:
                one.close()
    if client is not None:
        client.close()
    return out


def grpc_answers(url: str, count: int, model: str = "m", batch: int = 1) -> list[Any]:
    """The same over one gRPC channel (one HTTP/2 connection)."""
    x = np.ones((batch, WIDTH), np.float32)
    client = grpcclient.InferenceServerClient(url)
    out: list[Any] = []
    for _ in range(count):
        tensor = grpcclient.InferInput(INPUT_NAME, [batch, WIDTH], "FP32")
        tensor.set_data_from_numpy(x)
        try:
            out.append(float(client.infer(model, [tensor]).as_numpy("y")[0][0]))
        except Exception as exc:
            out.append(f"error: {exc}")
    client.close()
    return out
