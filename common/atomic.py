"""Atomic file writes, for every stage: checkpoints, sample grids, exported files, client videos.

The data goes to a hidden temporary file in the destination folder,
``.<stem>.tmp-<random><ext>`` (the extension kept, so PyAV and PIL pick the container from
it), which ``os.replace`` renames onto the final name once it is complete: a reader, or a
resumed job, never sees a half-written file. On any error the temporary is removed and the
target is left as it was. Temporaries a killed process left behind are removed by
:func:`remove_stale_temporaries`.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

TMP_MARK = ".tmp-"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside `path`; on success it becomes `path` (mode 0644)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}{TMP_MARK}", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Deletes the temporaries :func:`atomic_path` left in `folder` (from a killed process)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in folder.iterdir():
        if p.name.startswith(".") and TMP_MARK in p.name and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
