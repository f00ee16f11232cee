"""Shared output of the benchmark scripts: JSON and a markdown table, each with the command that made it."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def run_metadata(**extra: Any) -> dict[str, Any]:
    """The command line, Python version, CPU count and time of this run, plus ``extra``."""
    command = "python " + shlex.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    return {"command": command, "python": platform.python_version(), "cpus": os.cpu_count(), "time": time.strftime("%Y-%m-%d %H:%M:%S"), **extra}


def write_results(name: str, meta: dict[str, Any], payload: dict[str, Any], lines: list[str]) -> None:
    """Write ``results/<name>.json`` (``{"meta": ..., **payload}``) and ``results/<name>.md``; print the table."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({"meta": meta, **payload}, indent=2))
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
