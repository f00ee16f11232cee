"""Files written so that a process killed while writing leaves the old content or the new, never a part."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through ``<path>.tmp`` renamed over it (``os.replace`` is atomic on one filesystem).

    :param path: the file to write
    :param data: its new content
    """
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
