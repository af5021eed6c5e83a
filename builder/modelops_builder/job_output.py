"""How a builder Job reports: its exit codes and the one summary line in the termination log
(what the kubelet hands the operator). A leaf module every entry point imports."""

from __future__ import annotations

import logging
import os
from pathlib import Path

EXIT_OK, EXIT_INPUT, EXIT_INFRA = 0, 2, 3
TERMINATION_LOG_ENV = "MODELOPS_TERMINATION_LOG"
KUBE_TERMINATION_LOG = Path("/dev/termination-log")


def write_termination_log(line: str) -> None:
    """The kubelet reads /dev/termination-log; the env path wins (tests, other runtimes)."""
    target = os.environ.get(TERMINATION_LOG_ENV)
    path = Path(target) if target else KUBE_TERMINATION_LOG
    if not target and not (path.is_file() and os.access(path, os.W_OK)):
        return
    try:
        path.write_text(line + "\n")
    except OSError as exc:
        logging.getLogger(__name__).warning("termination log %s not written: %s", path, exc)
