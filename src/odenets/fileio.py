"""Atomic file writes: a temporary file beside the target, fsync, then rename over it, so a kill
mid-write leaves the previous version intact and readers never see a truncated file. A write the file
system refuses (no space, read-only, no permission) is one `WriteError` naming the file."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from odenets.errors import WriteError

BOOKKEEPING = True  # records or checks runs, computes none of their numbers (odenets.reporting.staleness)


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", what: str = "", previous: str | Path | None = None):
    """Write `path` atomically. With `previous`, the file being replaced is kept there (renamed, so it is
    the last complete version). `what` names the file in a `WriteError` ("checkpoint", "result")."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        if previous is not None and path.is_file():
            os.replace(path, previous)
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        refused = _os_error(e)
        if refused is not None:
            raise WriteError(path, refused, what) from e
        raise


def _os_error(e: BaseException | None) -> OSError | None:
    """The OSError behind `e`, if any (torch.save turns a failed write into a RuntimeError raised from it)."""
    while e is not None and not isinstance(e, OSError):
        e = e.__cause__ or e.__context__
    return e
