"""The one error type users see, and how any error is told in one line."""

from __future__ import annotations

import re


class ConfigError(Exception):
    """Bad user input (config value, scheme, depth, data files): printed as one line, exit status 2."""


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
