"""`modelops router-agent`: run the router agent until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from pathlib import Path

from modelops_operator.render.router import ROUTE_TOKEN_ENV
from modelops_operator.router.serve import AgentOptions, serve_agent


def run_router_agent(args: argparse.Namespace) -> int:
    """Entry point: 0 on a clean stop."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    options = AgentOptions(
        admin_socket=args.socket,
        routes_url=args.routes,
        boot_file=Path(args.boot) if args.boot else None,
        route_token=os.environ.get(ROUTE_TOKEN_ENV) or None,
        host=args.host,
        port=args.port,
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve_agent(options, stop)

    asyncio.run(main())
    return 0
