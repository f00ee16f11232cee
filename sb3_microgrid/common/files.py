"""Output files and folders: written so that a process killed while writing leaves the old content or the new, never a
part; folders checked to be writable before the work that fills them."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through ``<path>.tmp`` renamed over it (``os.replace`` is atomic on one filesystem).

    :param path: the file to write
    :param data: its new content
    """
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def make_out_folder(out: str | Path) -> None:
    """Create the run folder and check it is writable: before training, so that hours of it are not lost to a folder
    written only at the end.

    :param out: the run folder (created with its parents)
    :raises ValueError: naming ``out`` and the reason, if it cannot be created or written
    """
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise ValueError(f"cannot write {out}: {err.strerror or err}; choose another folder") from None
