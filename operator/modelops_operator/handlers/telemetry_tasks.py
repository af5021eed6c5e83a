"""One telemetry task per ModelDeployment that has a revision, on the leader only.

kopf's daemons would add a finalizer to every ModelDeployment and run on every replica; these
tasks start after a reconcile sees a revision, and stop when it goes, when the ModelDeployment
is deleted, or when this process stops leading.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..observability import log_ref

logger = logging.getLogger(__name__)

Key = tuple[str, str]
STOP_SECONDS = 1.0  # a look in progress (a scrape) may finish; then it is cancelled
# (namespace, name, stopped) -> runs until `stopped` completes (Telemetry.run).
Body = Callable[[str, str, Awaitable[Any]], Awaitable[None]]


class TelemetryTasks:
    """Running tasks by key, each with its own stop flag."""

    def __init__(self, body: Body) -> None:
        self._body = body
        self._tasks: dict[Key, tuple[asyncio.Task[None], asyncio.Event]] = {}

    def ensure(self, key: Key, wanted: bool) -> None:
        """Start the key's task when wanted and not running; stop it when not wanted."""
        running = self._tasks.get(key)
        if running is not None and running[0].done():
            del self._tasks[key]
            running = None
        if wanted and running is None:
            stop = asyncio.Event()
            task = asyncio.get_running_loop().create_task(self._guarded(key, stop))
            self._tasks[key] = (task, stop)
        elif not wanted and running is not None:
            self.stop(key)

    def stop(self, key: Key) -> None:
        """Ask the key's task to stop (it finishes its current look first)."""
        running = self._tasks.pop(key, None)
        if running is not None:
            running[1].set()

    async def stop_all(self) -> None:
        """Stop every task; cancel those that do not stop within STOP_SECONDS."""
        tasks = [task for task, _ in self._tasks.values()]
        for key in list(self._tasks):
            self.stop(key)
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=STOP_SECONDS)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    def __len__(self) -> int:
        return len(self._tasks)

    async def _guarded(self, key: Key, stop: asyncio.Event) -> None:
        try:
            await self._body(*key, stop.wait())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in one daemon must not stop the others
            logger.warning("telemetry stopped: %r", exc, extra=log_ref(*key))
