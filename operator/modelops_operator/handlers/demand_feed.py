"""`POST /routes/<namespace>/<name>/demand`: a router's report of requests it holds.

A router agent posts here the moment HAProxy holds a request for a revision at zero (and when a
held request was answered, or timed out), so the wake never waits for a metrics interval. The
report needs the same token as the route table (only that ModelDeployment's router has it);
only the leader takes it (a standby answers 503, and the agent's next attempt reaches another
replica). Taking a report is cheap: it is noted, and one reconcile follows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp.web
from pydantic import ValidationError

from ..api.routes import DemandReport
from .route_feed import RouteFeed, valid_key

Key = tuple[str, str]
MAX_BODY_BYTES = 4096


class DemandFeed:
    """Checks a demand report and hands it to the leader's telemetry."""

    def __init__(
        self,
        routes: RouteFeed,
        leading: Callable[[], bool],
        note: Callable[[Key, DemandReport], Awaitable[None]],
    ) -> None:
        self._routes, self._leading, self._note = routes, leading, note

    async def handle(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        """The aiohttp handler of `POST /routes/{namespace}/{name}/demand`."""
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        if not valid_key(namespace, name):
            return _text(400, "the path must be /routes/<namespace>/<name>/demand")
        key = (namespace, name)
        if not self._routes.authorized(key, request.headers.get("Authorization")):
            return _text(401, "a demand report needs its router's token (Authorization: Bearer)")
        if not self._leading():
            return _text(503, "this operator replica does not lead; another one takes reports")
        if (request.content_length or 0) > MAX_BODY_BYTES:
            return _text(413, f"a demand report is at most {MAX_BODY_BYTES} bytes")
        try:
            report = DemandReport.model_validate_json(await request.content.read(MAX_BODY_BYTES))
        except ValidationError as exc:
            return _text(400, f"not a demand report: {exc.errors()[0]['msg']}")
        await self._note(key, report)
        return aiohttp.web.Response(status=202)


def _text(status: int, text: str) -> aiohttp.web.Response:
    return aiohttp.web.Response(status=status, text=f"{text}\n")
