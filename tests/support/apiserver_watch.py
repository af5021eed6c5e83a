"""The read side of the faithful emulator (tests/support/apiserver.py): resourceVersions, the
event history a WATCH continues from, LISTs with the version of their snapshot, and WATCHes
that subscribe in the same step as they take their snapshot. Label selectors (equality- and
set-based) filter both.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import attrs
import kmock
from kmock._internal.k8s import KubernetesError

from tests.support import apiserver_rules as rules

Obj = dict[str, Any]
_END: Obj = {"type": "END"}  # ends the watch streams (a restarting server)
HISTORY = 20_000  # events kept for WATCH continuations (a real server's watch cache)


@attrs.frozen
class BadRequestError(KubernetesError):  # type: ignore[misc]
    """400: a request the server cannot parse (a malformed labelSelector)."""

    status: int = 400
    reason: str = "BadRequest"


@dataclass(eq=False)
class _Watcher:
    """One open WATCH: its resource and the events written since it subscribed."""

    resource: Any
    queue: asyncio.Queue[Obj] = field(default_factory=asyncio.Queue)


class WatchCache:
    """Versions, history and watchers of the emulator (mixed into FaithfulEmulator, whose
    `_lock` guards every write and every snapshot)."""

    _lock: asyncio.Lock
    _counter: Any = None
    _history: list[tuple[int, Any, Obj]] | None = None
    _oldest: int = 0  # versions after this one are in the history
    _watchers: set[_Watcher] | None = None
    _watch_gate: asyncio.Event | None = None
    watch_starts: int = 0
    bookmark_seconds: float = 60.0

    # --- test controls ------------------------------------------------------------------------
    def hold_watches(self) -> None:
        """New WATCH requests wait (a server restarting) until `release_watches`."""
        self._watch_gate = asyncio.Event()

    def release_watches(self) -> None:
        """Serve WATCH requests again."""
        if self._watch_gate is not None:
            self._watch_gate.set()
        self._watch_gate = None

    async def end_watches(self) -> None:
        """End every open watch stream, as a restarting API server does: its watch cache starts
        empty, so clients that come back with their resourceVersion are told 410 Gone."""
        async with self._lock:
            self._history = []
            self._oldest = self._version()
            for watcher in self._all_watchers():
                watcher.queue.put_nowait(_END)

    # --- versions and events ------------------------------------------------------------------
    def _next_version(self) -> str:
        if self._counter is None:
            self._counter = itertools.count(1000)
            self._oldest = 999
        self._last = next(self._counter)
        return str(self._last)

    def _version(self) -> int:
        if self._counter is None:
            self._next_version()
        return int(getattr(self, "_last", 1000))

    def _all_watchers(self) -> set[_Watcher]:
        if self._watchers is None:
            self._watchers = set()
        return self._watchers

    def _publish(self, resource: Any, kind: str, obj: Obj) -> None:
        """Record and fan out one event (the caller holds the lock)."""
        event = {"type": kind, "object": copy.deepcopy(obj)}
        version = int(obj["metadata"]["resourceVersion"])
        if self._history is None:
            self._history = []
        self._history.append((version, resource, event))
        if len(self._history) > HISTORY:
            dropped = self._history[: len(self._history) - HISTORY]
            del self._history[: len(dropped)]
            self._oldest = dropped[-1][0]
        for watcher in self._all_watchers():
            if watcher.resource == resource:
                watcher.queue.put_nowait(event)

    def _selector(self, request: kmock.Request) -> str:
        selector = str(request.params.get("labelSelector") or "")
        try:
            rules.selector_matches(selector, {})
        except ValueError as exc:
            raise BadRequestError(message=str(exc)) from None
        return selector

    def _live(self, request: kmock.Request, selector: str) -> list[Obj]:
        objs = self._KubernetesEmulator__get_objs(request, strict=False)
        return [o.raw for o in objs if not o.deleted and _selected(o.raw, selector)]

    async def _serve_list(self, request: kmock.Request) -> Any:
        selector = self._selector(request)
        async with self._lock:
            items = copy.deepcopy(self._live(request, selector))
            version = str(self._version())
        return {"kind": "List", "metadata": {"resourceVersion": version}, "items": items}

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        selector = self._selector(request)
        gate = self._watch_gate
        if gate is not None:
            await gate.wait()
        self.watch_starts += 1
        yield b""
        since = str(request.params.get("resourceVersion") or "")
        streaming = request.params.get("sendInitialEvents") == "true"
        watcher = _Watcher(request.resource)
        async with self._lock:
            # Subscribed in the same step as the snapshot: no write falls between the two.
            self._all_watchers().add(watcher)
            if streaming or since in ("", "0"):
                first = [
                    {"type": "ADDED", "object": copy.deepcopy(o)} for o in self._live(request, "")
                ]
            elif not since.isdigit() or int(since) < self._oldest:
                first = [{"type": "ERROR", "object": _gone(since)}]
            else:
                first = [
                    copy.deepcopy(event)
                    for version, resource, event in self._history or []
                    if version > int(since) and resource == request.resource
                ]
            version = str(self._version())
        try:
            for event in first:
                if event["type"] == "ERROR":
                    yield event
                    return
                if self._ours(request, event, selector):
                    yield event
            if streaming:
                yield _bookmark(version)
            while True:
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), self.bookmark_seconds)
                except TimeoutError:
                    # Like a real server: a BOOKMARK every minute keeps quiet streams alive.
                    yield _bookmark(str(self._version()), initial=False)
                    continue
                if event is _END:
                    return
                if self._ours(request, event, selector):
                    yield event
        finally:
            self._all_watchers().discard(watcher)

    def _ours(self, request: kmock.Request, event: Obj, selector: str) -> bool:
        meta = (event.get("object") or {}).get("metadata") or {}
        check = self._KubernetesEmulator__check
        namespace, name = meta.get("namespace"), meta.get("name")
        return bool(check(request, request.resource, namespace, name, False)) and _selected(
            event.get("object") or {}, selector
        )


def _selected(obj: Mapping[str, Any], selector: str) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return not selector or rules.selector_matches(selector, labels)


def _gone(since: str) -> Obj:
    message = f"too old resource version: {since}"
    return {"kind": "Status", "code": 410, "reason": "Expired", "message": message}


def _bookmark(version: str, *, initial: bool = True) -> Obj:
    annotations = {"k8s.io/initial-events-end": "true"} if initial else {}
    return {
        "type": "BOOKMARK",
        "object": {"metadata": {"resourceVersion": version, "annotations": annotations}},
    }
