"""One run per directory: an exclusive lock on `<run_dir>/run.lock` while a run trains.

`fcntl.flock` locks belong to the open file, so the kernel releases them when the holder ends however it
ends (`kill -9` included): a lock is never stale. The file says who holds it (pid, host, since when) for
the line a second process prints. Only global rank 0 of a DDP run takes it: its other ranks are its own
children (Lightning's launcher) or sibling SLURM tasks of the same job. On NFS, Linux maps `flock` to
byte-range locks, which the server arbitrates across nodes.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from odenets.errors import RunInUse, WriteError

BOOKKEEPING = True  # records or checks runs, computes none of their numbers (odenets.reporting.staleness)
LOCK_FILE = "run.lock"
log = logging.getLogger("odenets")


@contextmanager
def run_lock(run_dir: Path, wait: bool = False) -> Iterator[None]:
    """Hold `run_dir`'s lock for the block. Taken: `RunInUse` naming the holder, or with `wait` block until
    it is released (then the caller finds the holder's work: a finished run to skip, or one to resume)."""
    path = Path(run_dir) / LOCK_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise WriteError(path, e, "the run lock") from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
            if not wait:
                raise RunInUse(f"{run_dir} is in use by {holder}; this run was not started (wait_for_lock=true "
                               "waits for it, then skips or resumes)") from None
            log.info("%s is in use by %s; waiting for it (wait_for_lock=true)", run_dir, holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        since = datetime.now(timezone.utc).isoformat(timespec="seconds")
        os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()} (since {since})\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
