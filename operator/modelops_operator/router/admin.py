"""HAProxy's admin socket (the runtime API): one command per connection, text in, text out."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

READ_LIMIT = 1 << 20


class AdminError(RuntimeError):
    """The socket is not there yet, or HAProxy refused a command."""


@dataclass(frozen=True)
class SlotState:
    """One server slot as `show servers state` reports it."""

    backend: str
    name: str
    address: str
    port: int
    weight: int
    maintenance: bool


class HAProxyAdmin:
    """A client of one HAProxy's admin socket."""

    def __init__(self, socket_path: str, timeout_s: float = 5.0) -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s

    async def command(self, text: str) -> str:
        """Run one command; its whole answer (HAProxy closes the connection after it)."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(self.socket_path, limit=READ_LIMIT), self.timeout_s
            )
        except (OSError, TimeoutError) as exc:
            raise AdminError(f"cannot reach HAProxy at {self.socket_path}: {exc}") from exc
        try:
            writer.write(text.encode() + b"\n")
            await writer.drain()
            data = await asyncio.wait_for(reader.read(), self.timeout_s)
        except (OSError, TimeoutError) as exc:
            raise AdminError(f"HAProxy did not answer {text!r}: {exc}") from exc
        finally:
            writer.close()
        return data.decode(errors="replace")

    async def run(self, commands: Sequence[str]) -> None:
        """Run commands in order; fail on the first one HAProxy refuses."""
        for text in commands:
            answer = (await self.command(text)).strip()
            # Successful `set server` answers are empty or informational; refusals say so.
            lowered = answer.lower()
            if any(word in lowered for word in ("unknown", "no such", "error", "invalid")):
                raise AdminError(f"HAProxy refused {text!r}: {answer}")

    async def slots(self, backend: str) -> list[SlotState]:
        """Every server of a backend, from `show servers state`."""
        return parse_servers_state(await self.command(f"show servers state {backend}"))

    async def stats(self) -> list[dict[str, str]]:
        """`show stat` as one dict per row (pxname, svname, hrsp_4xx, ...)."""
        return parse_stat(await self.command("show stat"))

    async def table(self, name: str) -> dict[str, dict[str, int]]:
        """A stick table: key -> {counter: value}."""
        return parse_table(await self.command(f"show table {name}"))


def parse_servers_state(text: str) -> list[SlotState]:
    """Rows of `show servers state` (format version 1)."""
    slots = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 19 or line.startswith("#") or not fields[0].isdigit():
            continue
        slots.append(
            SlotState(
                backend=fields[1],
                name=fields[3],
                address=fields[4],
                port=int(fields[18]) if fields[18].isdigit() else 0,
                weight=int(fields[7]),
                # srv_admin_state bit 0x1 is "forced maintenance" (disabled or set to maint).
                maintenance=bool(int(fields[6]) & 0x1),
            )
        )
    return slots


def parse_stat(text: str) -> list[dict[str, str]]:
    """`show stat` CSV (header line starts with '# ')."""
    body = text.lstrip("# ").strip()
    if not body:
        return []
    return list(csv.DictReader(io.StringIO(body)))


def parse_table(text: str) -> dict[str, dict[str, int]]:
    """`show table NAME` lines `0x...: key=rev1 use=0 exp=0 gpc0=3 http_req_cnt=9`."""
    rows: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        if "key=" not in line:
            continue
        pairs = dict(part.split("=", 1) for part in line.split() if "=" in part)
        key = pairs.pop("key")
        rows[key] = {name: int(value) for name, value in pairs.items() if value.isdigit()}
    return rows
