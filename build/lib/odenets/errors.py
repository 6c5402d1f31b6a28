"""The one error type users see, how any error is told in one line, and which errors are bad input."""

from __future__ import annotations

import os
import re
import sys

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """Bad user input (config value, scheme, depth, data files). A `ValueError` for library users; the
    command line prints it as one line and exits with status 2."""


_NOISE = ("full_key:", "object_type=", "reference_type=", "Config search path", "provider=", "See https://hydra.cc",
          "Set the environment variable HYDRA_FULL_ERROR")


def one_line(e: BaseException) -> str:
    """A single line for an error: ours verbatim; Hydra/OmegaConf messages folded, with the valid
    choices of a config group listed when a choice was not found."""
    if isinstance(e, ConfigError):
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


def exit_bad_input(e: BaseException) -> None:
    """Print `error: <one line>` on stderr and exit with status 2."""
    print(f"error: {one_line(e)}", file=sys.stderr)
    sys.exit(2)
