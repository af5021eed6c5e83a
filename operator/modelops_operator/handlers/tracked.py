"""What this process keeps about each ModelDeployment, in one object per ModelDeployment.

An object is made when its first watch event arrives and forgotten when its DELETED event does;
everything about it goes together. A reconcile in flight holds the object's lock: forgetting it
then keeps the object (and its lock) until that reconcile ends, so a ModelDeployment created
again under the same name never runs two reconciles at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, str]
Body = Mapping[str, Any]


@dataclass
class Tracked:
    """One ModelDeployment as this process knows it.

    body: the newest body a watch event brought; status: the status this process wrote last
    (None once another replica may have written since); handled: the trigger fingerprint of
    the body the last reconcile started from; failures: reconciles failed in a row; netted: its
    safety-net timer was set once; forgotten: deleted, kept only until its reconcile ends.
    """

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # reconciles holding or waiting for the lock
    body: dict[str, Any] | None = None
    status: dict[str, Any] | None = None
    handled: tuple[Any, ...] | None = None
    failures: int = 0
    netted: bool = False
    forgotten: bool = False

    def latest(self) -> Body | None:
        """The newest body, with the status this process wrote last."""
        if self.body is None:
            return None
        # We are the only writer of status; a body from a watch event can predate our last
        # patch (a timer firing before the MODIFIED event arrives): decide on what we wrote.
        if self.status is None or self.body.get("status") == self.status:
            return self.body
        return {**self.body, "status": self.status}


class TrackedObjects:
    """Tracked ModelDeployments by (namespace, name)."""

    def __init__(self) -> None:
        self._objects: dict[Key, Tracked] = {}

    def seen(self, key: Key, body: Body) -> Tracked:
        """Record the newest body of a ModelDeployment (made on its first event)."""
        tracked = self._objects.get(key)
        if tracked is None:
            tracked = self._objects[key] = Tracked()
        tracked.body = dict(body)
        tracked.forgotten = False
        return tracked

    def get(self, key: Key) -> Tracked | None:
        """The tracked object of a live ModelDeployment, or None."""
        tracked = self._objects.get(key)
        return None if tracked is None or tracked.forgotten else tracked

    @contextlib.asynccontextmanager
    async def locked(self, key: Key) -> AsyncIterator[Tracked]:
        """Hold the object's lock (one reconcile at a time per ModelDeployment); an object
        forgotten meanwhile, or never seen, goes when its last reconcile ends."""
        tracked = self._objects.get(key)
        if tracked is None:
            tracked = self._objects[key] = Tracked()
        tracked.users += 1
        try:
            async with tracked.lock:
                yield tracked
        finally:
            tracked.users -= 1
            gone = tracked.forgotten or tracked.body is None
            if tracked.users == 0 and gone and self._objects.get(key) is tracked:
                del self._objects[key]

    def forget(self, key: Key) -> None:
        """Drop everything about a deleted ModelDeployment; a running reconcile keeps the lock."""
        tracked = self._objects.get(key)
        if tracked is None:
            return
        if tracked.users:
            tracked.forgotten = True
            tracked.body = tracked.status = tracked.handled = None
            tracked.failures, tracked.netted = 0, False
        else:
            del self._objects[key]

    def forget_statuses(self) -> None:
        """Another replica may write statuses now: decide from what the watch brings."""
        for tracked in self._objects.values():
            tracked.status = None

    def forget_handled(self) -> None:
        """Reconcile every object again, whatever its last reconcile started from."""
        for tracked in self._objects.values():
            tracked.handled = None

    def keys(self) -> list[Key]:
        """Keys of the live (not forgotten) objects with a body."""
        return [key for key, tracked in self._objects.items() if self._live(tracked)]

    def __contains__(self, key: object) -> bool:
        tracked = self._objects.get(key)  # type: ignore[call-overload]
        return tracked is not None and self._live(tracked)

    def __iter__(self) -> Iterator[Key]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    @staticmethod
    def _live(tracked: Tracked) -> bool:
        return not tracked.forgotten and tracked.body is not None
