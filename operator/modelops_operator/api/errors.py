"""Turn pydantic validation errors into one message a user can act on."""

from __future__ import annotations

from pydantic import ValidationError


def format_validation_error(exc: ValidationError, root: str = "spec") -> str:
    """Join every error as `spec.a.b: what is wrong`, naming the field by its wire path."""
    parts: list[str] = []
    for err in exc.errors():
        parts_loc = [str(p) for p in err.get("loc", ()) if p != "__root__"]
        if parts_loc and parts_loc[0] == root:
            # Errors from a whole-object parse already start at the root field.
            parts_loc = parts_loc[1:]
        loc = ".".join(parts_loc)
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        path = f"{root}.{loc}" if loc else root
        parts.append(msg if msg.startswith(path) else f"{path}: {msg}")
    return "; ".join(parts)
