"""The router agent: keeps one HAProxy's server slots equal to the ModelDeployment's route table.

It runs beside HAProxy in every router pod. It reads the table from the ConfigMap the pod
mounts (so a router restarted while the operator is away still serves the last table) and
long-polls the operator for changes (so a rollback's weight 0 lands within a second). Every
second, and on every change, it compares HAProxy's slots with the table and sends only the
difference. It holds no Kubernetes credentials and never writes anything but HAProxy's state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..api.routes import RouteTable
from ..render.haproxy import GRPC_PORT, HTTP_PORT, METRICS_PORT
from . import slots
from .admin import AdminError, HAProxyAdmin
from .figures import Ledger, slot_counters

logger = logging.getLogger(__name__)

RESYNC_SECONDS = 1.0
ADDRESS_TTL_SECONDS = 30.0


@dataclass(frozen=True)
class Endpoint:
    """Where a revision's Service answers: its cluster IP and the three Triton ports."""

    address: str
    http_port: int = HTTP_PORT
    grpc_port: int = GRPC_PORT
    metrics_port: int = METRICS_PORT

    def port(self, backend: str) -> int:
        """The port of one backend."""
        return {"http": self.http_port, "grpc": self.grpc_port}.get(backend, self.metrics_port)


# service name, namespace -> its endpoint (None while it cannot be resolved)
Resolver = Callable[[str, str], Awaitable[Endpoint | None]]
# the newest table of a source, or None when it has nothing newer
TableSource = Callable[[int], Awaitable[RouteTable | None]]


async def dns_resolver(service: str, namespace: str) -> Endpoint | None:
    """The Service's cluster IP through the pod's DNS (`<service>.<namespace>.svc`)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(f"{service}.{namespace}.svc", None)
    except OSError:
        return None
    return Endpoint(str(infos[0][4][0])) if infos else None


class RouterAgent:
    """Applies route tables to one HAProxy and counts what its clients saw per revision."""

    def __init__(
        self, admin: HAProxyAdmin, resolve: Resolver = dns_resolver, agent_port: int = 0
    ) -> None:
        self.admin = admin
        self.resolve = resolve
        self.agent_port = agent_port  # where HAProxy's hold action reports demand
        self.table = RouteTable()
        self.applied_version = -1
        self.in_sync = False
        self.ledger = Ledger()
        self._addresses: dict[str, tuple[float, Endpoint]] = {}
        self._owners: dict[tuple[str, str], int] = {}
        self._hold_needed = False
        self.changed = asyncio.Event()

    def offer(self, table: RouteTable | None) -> None:
        """Take `table` if it is newer than the one held."""
        if table is not None and table.version > self.table.version:
            self.table = table
            self.changed.set()

    @property
    def ready(self) -> bool:
        """HAProxy runs the newest table, and that table sends requests somewhere or holds them
        (a revision scaled to zero: the router must keep taking clients' connections)."""
        return self.in_sync and (bool(self.table.serving()) or self.table.hold_seconds > 0)

    async def _endpoint(self, service: str) -> Endpoint | None:
        cached = self._addresses.get(service)
        if cached is not None and time.monotonic() - cached[0] < ADDRESS_TTL_SECONDS:
            return cached[1]
        endpoint = await self.resolve(service, self.table.namespace)
        if endpoint is not None:
            self._addresses[service] = (time.monotonic(), endpoint)
        return endpoint

    async def _targets(self, backend: str) -> list[slots.Target]:
        routes = self.table.routes
        # Triton's own metrics page: only from the revision with most of the traffic.
        stable = max(routes, key=lambda r: (r.weight, r.revision), default=None)
        targets = []
        for route in routes:
            endpoint = await self._endpoint(route.service)
            if endpoint is None:
                continue  # not resolvable yet: its requests go to the others meanwhile
            weight = route.weight
            if backend == "metrics":
                weight = 1 if route is stable and route.weight > 0 else 0
            targets.append(
                slots.Target(route.revision, endpoint.address, endpoint.port(backend), weight)
            )
        return targets

    async def sync(self) -> bool:
        """One comparison of HAProxy with the table; True when HAProxy runs the table."""
        version = self.table.version
        wanted = {r.revision for r in self.table.routes}
        plans: list[tuple[str, list[str]]] = []
        owners: dict[tuple[str, str], int] = {}
        done = True
        for backend in ("http", "grpc", "metrics"):
            current = await self.admin.slots(backend)
            assigned = slots.assign(await self._targets(backend), current)
            plans.append((backend, slots.commands(backend, current, assigned)))
            owners.update({(backend, name): t.revision for name, t in assigned.items()})
            done &= {t.revision for t in assigned.values()} >= wanted
        # Counters up to this moment belong to the slots' old revisions; from now on, the new.
        await self._read_counters(owners)
        # The hold first: a table that parks every slot must find HAProxy holding, not refusing.
        # Sent every round (one command): a restarted HAProxy starts with no hold.
        await self._hold(self.table.hold_seconds * 1000)
        for _, commands in plans:
            await self.admin.run(commands)
        self._owners = owners
        self.in_sync = done
        if done and version != self.applied_version:
            self.applied_version = version
            logger.info("route table %d applied: %s", version, self.table.weights())
        return done

    async def _hold(self, hold_ms: int) -> None:
        """Set the hold action's time and this agent's port (render/hold.py)."""
        if hold_ms == 0 and not self._hold_needed:
            return  # never held: a configuration without the hold action stays untouched
        self._hold_needed = hold_ms > 0
        try:
            await self.admin.run([f"modelops hold {hold_ms} {self.agent_port}"])
        except AdminError as exc:
            if "unknown" not in str(exc).lower():
                raise
            logger.warning("HAProxy has no hold action: requests at zero get 503 at once")

    async def count(self) -> None:
        """Read HAProxy's counters into the per-revision ledger."""
        await self._read_counters(self._owners)

    async def _read_counters(self, owners: dict[tuple[str, str], int]) -> None:
        stats = await self.admin.stats()
        table = await self.admin.table("grpc")
        self.ledger.update(owners, slot_counters(stats, table))

    async def run(self, stop: asyncio.Event) -> None:
        """Sync and count every second, and at once when a newer table arrives."""
        while not stop.is_set():
            # Cleared before the sync: a table offered during it wakes the next round at once.
            self.changed.clear()
            try:
                await self.sync()
                await self.count()
            except (AdminError, ValueError) as exc:
                self.in_sync = False
                logger.warning("router not in sync: %s", exc)
            if self.changed.is_set():
                continue
            waiters = {
                asyncio.ensure_future(self.changed.wait()),
                asyncio.ensure_future(stop.wait()),
            }
            _, pending = await asyncio.wait(
                waiters, timeout=RESYNC_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()


async def follow(source: TableSource, agent: RouterAgent, stop: asyncio.Event) -> None:
    """Feed the agent every newer table a source yields, until stopped."""
    while not stop.is_set():
        try:
            agent.offer(await source(agent.table.version))
        except Exception as exc:  # a source that fails is retried; the agent keeps its table
            logger.debug("route source failed: %r", exc)
            await asyncio.sleep(RESYNC_SECONDS)
