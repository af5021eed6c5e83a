"""When each ModelDeployment is reconciled: now (an event), or at its one timer (the plan's
requeue, the jittered safety net, a retry backoff); triggers coalesce; a bounded number run at
once. Replaces kopf's timers, which cost a task per object and fired for every object together.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

Key = tuple[str, str]
# Reconciles in flight at once: a thousand resumes at startup queue here, not in the API server.
CONCURRENCY = 32


class Scheduler:
    """Timers and coalescing triggers of reconciles."""

    def __init__(
        self, run: Callable[[Key], Awaitable[None]], concurrency: int = CONCURRENCY
    ) -> None:
        self._run = run
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._pending: set[Key] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(concurrency)
        self.enabled = False

    def now(self, key: Key) -> None:
        """Reconcile soon (folded into one that is already waiting to start)."""
        if not self.enabled or key in self._pending:
            return
        self._pending.add(key)
        task = asyncio.get_running_loop().create_task(self._fire(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def at(self, key: Key, delay: float) -> None:
        """The key's one timer: reconcile after `delay` seconds (replaces the previous one)."""
        self.cancel(key)
        if not self.enabled:
            return
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(max(0.0, delay), self._due, key)

    def cancel(self, key: Key) -> None:
        """Drop the key's timer."""
        handle = self._timers.pop(key, None)
        if handle is not None:
            handle.cancel()

    async def stop(self) -> None:
        """No more reconciles: cancel timers and the ones in flight."""
        self.enabled = False
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._pending.clear()

    @property
    def in_flight(self) -> int:
        """Reconciles started or waiting for a slot."""
        return len(self._tasks)

    @property
    def timers(self) -> int:
        """Timers set (one per ModelDeployment at most)."""
        return len(self._timers)

    def _due(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.now(key)

    async def _fire(self, key: Key) -> None:
        try:
            async with self._slots:
                self._pending.discard(key)
                await self._run(key)
        finally:
            self._pending.discard(key)
