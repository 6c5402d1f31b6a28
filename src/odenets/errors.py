"""The errors users see, how any error is told in one line, and the exit status of each.

Exit statuses: 2 bad input (`ConfigError`, Hydra's usage errors; a checkpoint that is unreadable or not plain
data is one too), 3 the run directory is in use by another process (`RunInUse`), 4 the file system refused a
write (`WriteError`: no space, read-only, no permission, a path that cannot be a directory), 128 + n a run
stopped by signal n after saving its state (pre-emption: 143 for SIGTERM, 138 for SIGUSR1, 140 for SIGUSR2,
or the signal `SUBMITIT_PREEMPT_SIGNAL` names), and for a multirun the number of jobs that did not finish.
The terminal shows one line per error (`OneLineFormatter`); tracebacks go to the log files.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import sys

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

BOOKKEEPING = True  # records or checks runs, computes none of their numbers (odenets.reporting.staleness)
EXIT_BAD_INPUT, EXIT_IN_USE, EXIT_WRITE = 2, 3, 4


class ConfigError(ValueError):
    """Bad user input (config value, scheme, depth, data files). A `ValueError` for library users; the
    command line prints it as one line and exits with status 2."""


class RunInUse(RuntimeError):
    """Another process holds the run directory's lock (exit status 3)."""


class WriteError(OSError):
    """A file could not be written: the message names the path and what it was (exit status 4)."""

    def __init__(self, path, reason: BaseException, what: str = "") -> None:
        text = str(reason).strip()
        why = getattr(reason, "strerror", None) or (text.splitlines()[0] if text else type(reason).__name__)
        super().__init__(getattr(reason, "errno", None), f"cannot write {what + ' ' if what else ''}{path}: {why}")
        self.path = path

    def __str__(self) -> str:
        return self.strerror


WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR,
                          errno.EEXIST, errno.EFBIG, errno.EISDIR, errno.ENOENT})


def write_error(e: BaseException) -> WriteError | None:
    """`e` as a `WriteError` if it is the file system refusing a write (Hydra creating the run directory,
    a logger's file): None for anything else."""
    if isinstance(e, WriteError):
        return e
    if isinstance(e, OSError) and e.errno in WRITE_ERRNOS and e.filename:
        return WriteError(e.filename, e)
    return None


_NOISE = ("full_key:", "object_type=", "reference_type=", "Config search path", "provider=", "See https://hydra.cc",
          "Set the environment variable HYDRA_FULL_ERROR")


def one_line(e: BaseException) -> str:
    """A single line for an error: ours verbatim; Hydra/OmegaConf messages folded, with the valid
    choices of a config group listed when a choice was not found."""
    if isinstance(e, (ConfigError, RunInUse, WriteError)):
        return str(e)
    text = str(e)
    options = getattr(e, "options", None)
    missing = re.search(r"Could not find '([^'/]+)/([^']+)'", text)
    if missing:
        group, name = missing.groups()
        valid = f"valid choices for {group}: {', '.join(options)}" if options else f"no such file in conf/{group}/"
        return f"unknown {group} {name!r}; {valid}"
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(_NOISE) or line.startswith("\t"):
            continue
        if line.startswith("Available options"):
            break
        lines.append(line.rstrip("."))
    message = "; ".join(lines) or type(e).__name__
    return message if isinstance(e, (ValueError, KeyError)) or "Exception" in type(e).__name__ \
        else f"{type(e).__name__}: {message}"


def is_bad_input(e: BaseException) -> bool:
    """Our config errors, Hydra's and OmegaConf's, and Hydra's command-line usage errors (raised by
    Hydra's own code); anything else is a bug and keeps its traceback."""
    if isinstance(e, (ConfigError, HydraException, OmegaConfBaseException)):
        return True
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return isinstance(e, ValueError) and tb is not None and f"{os.sep}hydra{os.sep}" in tb.tb_frame.f_code.co_filename


def exit_with(e: BaseException, status: int = EXIT_BAD_INPUT) -> None:
    """Print `error: <one line>` on stderr and exit with `status`."""
    print(f"error: {one_line(e)}", file=sys.stderr)
    sys.exit(status)


def exit_bad_input(e: BaseException) -> None:
    """Print `error: <one line>` on stderr and exit with status 2."""
    exit_with(e, EXIT_BAD_INPUT)


class OneLineFormatter(logging.Formatter):
    """The terminal's log format (conf/hydra/default.yaml: the console handler): a record without its
    traceback, which the log files (`train.log`) keep."""

    def format(self, record: logging.LogRecord) -> str:
        kept = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = kept
