"""The bounded revision history: entries, their reasons, and whether a failure blocks a retry.

History reasons read "Reason [retry=TOKEN]: message"; the token is the value of the
`modelops.dev/retry` annotation the attempt ran under, so a new value starts a new attempt.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..api import HISTORY_LIMIT, HistoryEntry, RevisionState

REASON_LIMIT = 1024
_REASON = re.compile(r"^([A-Za-z][A-Za-z0-9]*)(?: \[retry=([^\]]*)\])?: ")
FAILED_STATES = (RevisionState.ROLLED_BACK, RevisionState.FAILED)
# States of a revision that served once and may serve again (modelops.dev/rollback-to).
SERVED_STATES = (RevisionState.SERVING, RevisionState.SUPERSEDED)


def retry_token(value: str) -> str:
    """The retry annotation value as stored in a history reason (no brackets, bounded)."""
    return value.replace("[", "").replace("]", "")[:63]


def history_reason(reason: str, message: str, token: str = "") -> str:
    """`Reason [retry=TOKEN]: message`, bounded to the schema's 1024 characters."""
    tag = f" [retry={retry_token(token)}]" if token else ""
    return f"{reason}{tag}: {message}"[:REASON_LIMIT]


def parse_reason(text: str | None) -> tuple[str, str, str]:
    """(Reason, retry token, message) of a history reason written by history_reason."""
    match = _REASON.match(text or "")
    if not match:
        return "", "", text or ""
    return match.group(1), match.group(2) or "", (text or "")[match.end() :]


def upsert(
    history: Sequence[HistoryEntry],
    revision: int,
    *,
    key: str | None = None,
    generation: int | None = None,
    state: RevisionState,
    reason: str | None,
    time: str,
    signature: str | None = None,
) -> list[HistoryEntry]:
    """History with the revision's entry set (added when new), oldest dropped beyond 10."""
    old = next((e for e in history if e.revision == revision), None)
    entry = HistoryEntry(
        signature=signature if signature is not None else (old.signature if old else None),
        revision=revision,
        engine_key=key if key is not None else (old.engine_key if old else ""),
        generation=generation if generation is not None else (old.generation if old else 0),
        state=state,
        reason=reason,
        time=time,
    )
    out = sorted([e for e in history if e.revision != revision] + [entry], key=lambda e: e.revision)
    return out[-HISTORY_LIMIT:]


def blocking_failure(
    history: Sequence[HistoryEntry], generation: int, retry: str
) -> HistoryEntry | None:
    """The newest rolled-back or failed attempt at this generation under this retry value."""
    for entry in reversed(history):
        same_attempt = parse_reason(entry.reason)[1] == retry_token(retry)
        if entry.state in FAILED_STATES and entry.generation == generation and same_attempt:
            return entry
    return None


def next_revision(history: Sequence[HistoryEntry], *numbers: int | None) -> int:
    """One more than any revision number ever seen, so numbers only grow."""
    seen = [e.revision for e in history] + [n for n in numbers if n is not None]
    return max(seen, default=0) + 1
