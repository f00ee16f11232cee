"""How a probe writes its finding: ``OUT`` (JSON, with the command) and ``OUT`` with ``.md`` (the table)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_probe(out: str, command: str, payload: dict[str, Any], lines: list[str]) -> None:
    """Write ``{"command": command, **payload}`` to ``out`` and ``lines`` to ``out`` with the suffix ``.md``."""
    Path(out).write_text(json.dumps({"command": command, **payload}, indent=2))
    Path(out).with_suffix(".md").write_text("\n".join(lines) + "\n")
