"""Scrape Triton pods' /metrics over HTTP and turn consecutive samples into interval figures.

The only I/O of the metrics package besides prometheus.py. Nothing here raises to the caller
for a pod that cannot be read: every failure becomes a `Missing` with a reason, so a kopf
timer keeps running and the decision code sees "no data" (which never scales down or rolls back).

Pods belong to tenants, and a tenant's pods may hang on purpose. Connections are therefore
budgeted per namespace (ScrapeGates: a namespace whose pods hang waits for its own slots only),
the session itself queues nothing (no pool limit), and a scrape's timeout starts once its slot
is held: waiting for a slot is never counted against the pod being read.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from enum import StrEnum

import aiohttp

from .rates import IntervalFigures, aggregate, interval
from .sample import MetricsParseError, TritonSample, parse_triton_metrics

MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_TIMEOUT_S = 5.0
# Connections to one namespace's pods at once, and to every pod at once.
PER_NAMESPACE_CONNECTIONS = 8
TOTAL_CONNECTIONS = 256

# A slot for one connection (ScrapeGates.slot bound to a namespace).
Slot = Callable[[], AbstractAsyncContextManager[None]]


class ScrapeGates:
    """Connection slots per namespace and in all, taken in that order, so a namespace waiting
    for its own slots holds none of the shared ones."""

    def __init__(
        self, per_namespace: int = PER_NAMESPACE_CONNECTIONS, total: int = TOTAL_CONNECTIONS
    ) -> None:
        self.per_namespace = max(1, per_namespace)
        self._total = asyncio.Semaphore(max(1, total))
        self._namespaces: dict[str, asyncio.Semaphore] = {}
        self._users: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def slot(self, namespace: str) -> AsyncIterator[None]:
        """Hold one connection slot of `namespace` (waits while its budget is in use)."""
        gate = self._namespaces.setdefault(namespace, asyncio.Semaphore(self.per_namespace))
        self._users[namespace] = self._users.get(namespace, 0) + 1
        try:
            async with gate, self._total:
                yield
        finally:
            self._users[namespace] -= 1
            if not self._users[namespace]:  # nobody holds or waits: forget the namespace
                del self._users[namespace], self._namespaces[namespace]

    def for_namespace(self, namespace: str) -> Slot:
        """The slot factory of one namespace."""
        return lambda: self.slot(namespace)


class MissingReason(StrEnum):
    """Why a pod gave no figures this time."""

    UNREACHABLE = "Unreachable"
    TIMEOUT = "Timeout"
    HTTP_STATUS = "HttpStatus"
    TOO_LARGE = "TooLarge"
    PARSE = "Parse"
    BASELINE = "Baseline"  # first sample of a pod: figures need two


@dataclass(frozen=True)
class Missing:
    """A pod without figures this time, and why (the message is for logs and status)."""

    key: str
    reason: MissingReason
    message: str


@dataclass(frozen=True)
class Scraped:
    """A pod's sample."""

    key: str
    sample: TritonSample


ScrapeResult = Scraped | Missing


class _ScrapeError(Exception):
    def __init__(self, reason: MissingReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


async def fetch_text(
    session: aiohttp.ClientSession,
    url: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_bytes: int = MAX_BODY_BYTES,
) -> str:
    """GET a metrics page; raises _ScrapeError with a MissingReason on any failure."""
    try:
        async with session.get(
            url,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            # Triton waits for idle keep-alive connections on SIGTERM; one request per interval
            # gains nothing from keep-alive and would slow every rollout's pod shutdowns.
            headers={"Connection": "close", "Accept": "text/plain"},
            allow_redirects=False,
        ) as resp:
            if resp.status != 200:
                raise _ScrapeError(MissingReason.HTTP_STATUS, f"GET {url}: HTTP {resp.status}")
            if (resp.content_length or 0) > max_bytes:
                raise _ScrapeError(
                    MissingReason.TOO_LARGE, f"GET {url}: {resp.content_length} bytes"
                )
            chunks, size = [], 0
            # Chunked answers carry no length: count while reading, stop past the bound.
            async for chunk in resp.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > max_bytes:
                    raise _ScrapeError(
                        MissingReason.TOO_LARGE, f"GET {url}: over {max_bytes} bytes"
                    )
                chunks.append(chunk)
            return b"".join(chunks).decode("utf-8", errors="replace")
    except TimeoutError as exc:
        raise _ScrapeError(MissingReason.TIMEOUT, f"GET {url}: no answer in {timeout_s}s") from exc
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        raise _ScrapeError(MissingReason.UNREACHABLE, f"GET {url}: {exc!r}") from exc


async def fetch_page(
    session: aiohttp.ClientSession,
    url: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_bytes: int = MAX_BODY_BYTES,
) -> str:
    """A page's text, size- and time-bounded; ValueError naming the failure otherwise."""
    try:
        return await fetch_text(session, url, timeout_s=timeout_s, max_bytes=max_bytes)
    except _ScrapeError as exc:
        raise ValueError(str(exc)) from exc


async def scrape_pod(
    session: aiohttp.ClientSession,
    key: str,
    url: str,
    *,
    model: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_bytes: int = MAX_BODY_BYTES,
    clock: Callable[[], float] = time.monotonic,
) -> ScrapeResult:
    """One pod's sample, stamped with `clock()` when the page arrived; never raises."""
    try:
        text = await fetch_text(session, url, timeout_s=timeout_s, max_bytes=max_bytes)
        # Off the event loop: a hostile page must not stall reconciles or /healthz.
        sample = await asyncio.to_thread(parse_triton_metrics, text, clock(), model)
        return Scraped(key, sample)
    except _ScrapeError as exc:
        return Missing(key, exc.reason, str(exc))
    except MetricsParseError as exc:
        return Missing(key, MissingReason.PARSE, f"{url}: {exc}")


async def scrape_pods(
    session: aiohttp.ClientSession,
    targets: Mapping[str, str],
    *,
    model: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_bytes: int = MAX_BODY_BYTES,
    slot: Slot | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, ScrapeResult]:
    """Scrape every `key -> metrics URL` concurrently, each while holding a `slot` (default:
    a budget of PER_NAMESPACE_CONNECTIONS for this call); one result per key. The timeout of
    each scrape starts once its slot is held."""
    take = slot or ScrapeGates().for_namespace("")

    async def one(key: str, url: str) -> ScrapeResult:
        async with take():
            return await scrape_pod(
                session,
                key,
                url,
                model=model,
                timeout_s=timeout_s,
                max_bytes=max_bytes,
                clock=clock,
            )

    results = await asyncio.gather(*(one(k, u) for k, u in targets.items()))
    return {r.key: r for r in results}


@dataclass(frozen=True)
class Poll:
    """One round: figures per pod, pods without figures, and the aggregate (None: no data)."""

    figures: Mapping[str, IntervalFigures]
    missing: Mapping[str, Missing]
    aggregate: IntervalFigures | None

    @property
    def complete(self) -> bool:
        """Every pod polled gave figures."""
        return not self.missing


@dataclass
class MetricsTracker:
    """Keeps each pod's previous sample and turns the next one into interval figures.

    Keep one tracker per ModelDeployment (and per revision when analysing a canary) in the
    handler's memory. Key pods by name (or uid): a restarted container keeps its key and its
    counter reset is handled by the maths; a new pod starts with a baseline.
    """

    model: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_bytes: int = MAX_BODY_BYTES
    clock: Callable[[], float] = time.monotonic
    _previous: dict[str, TritonSample] = field(default_factory=dict, repr=False)

    def update(self, results: Mapping[str, ScrapeResult]) -> Poll:
        """Feed one round of scrape results (PURE apart from the tracker's own memory).

        Pods absent from `results` are forgotten, so a pod that comes back starts afresh.
        A failed scrape keeps the pod's previous sample: the next good one spans both intervals.
        """
        for gone in set(self._previous) - set(results):
            del self._previous[gone]
        figures: dict[str, IntervalFigures] = {}
        missing: dict[str, Missing] = {}
        for key, result in results.items():
            if isinstance(result, Missing):
                missing[key] = result
                continue
            previous = self._previous.get(key)
            if previous is None or result.sample.timestamp <= previous.timestamp:
                self._previous[key] = result.sample
                missing[key] = Missing(key, MissingReason.BASELINE, "first sample of this pod")
                continue
            figures[key] = interval(previous, result.sample)
            self._previous[key] = result.sample
        return Poll(figures, missing, aggregate(list(figures.values())))

    async def poll(
        self, session: aiohttp.ClientSession, targets: Mapping[str, str], slot: Slot | None = None
    ) -> Poll:
        """Scrape `key -> metrics URL` (each holding a `slot`) and update (the telemetry task,
        each interval)."""
        results = await scrape_pods(
            session,
            targets,
            slot=slot,
            model=self.model,
            timeout_s=self.timeout_s,
            max_bytes=self.max_bytes,
            clock=self.clock,
        )
        return self.update(results)

    def forget(self, key: str) -> None:
        """Drop a pod's previous sample (e.g. when it is replaced)."""
        self._previous.pop(key, None)


def new_session() -> aiohttp.ClientSession:
    """A session for scraping: no connection reuse (see fetch_text), no cookies kept, and no
    pool limit (ScrapeGates bounds connections; a pool limit would queue every tenant behind
    one tenant's hanging pods, inside each request's timeout)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True, limit=0),
        cookie_jar=aiohttp.DummyCookieJar(),
    )
