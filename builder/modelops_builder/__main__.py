"""`python -I -m modelops_builder`: the builder's command line, run isolated (no user site, no
PYTHON* variables, no current folder on the path), as the build Job's publishing step runs it."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
