"""How a command ends: what it did, or its bad input told in one line (`error: ...` on stderr) and the exit
status `odenets.errors` gives it (2 for a `ConfigError`, a `CheckpointError` among them; 4 for a `WriteError`),
the traceback going to the log (this module's logger, at debug level). Anything else is a bug and keeps its
traceback. `odenets-eval`, `odenets-diagnose` and the scripts that collect, verify and revalidate records end
here; `odenets-train` has Hydra's errors and sweeps to tell apart too (`odenets.train`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence

from odenets.errors import EXIT_BAD_INPUT, EXIT_WRITE, ConfigError, WriteError, exit_with, one_line

log = logging.getLogger(__name__)


def run_command(command: Callable[[], int]) -> int:
    """`command()`'s exit status; where it raises bad input, `error: <one line>` on stderr and `SystemExit` with
    that error's status."""
    try:
        return command()
    except (ConfigError, WriteError) as e:
        log.debug("%s", one_line(e), exc_info=e)
        exit_with(e, EXIT_WRITE if isinstance(e, WriteError) else EXIT_BAD_INPUT)


def run_and_options(argv: Sequence[str], usage: str, options: Collection[str]) -> tuple[str, dict[str, str],
                                                                                        list[str]]:
    """(RUN, the command's own options, the config overrides) of `RUN [key=value ...]`: a key in `options` is
    the command's, any other an override. `ConfigError(usage)` where no run comes first."""
    if not argv or "=" in argv[0]:
        raise ConfigError(usage)
    own, overrides = {}, []
    for arg in argv[1:]:
        key, sep, value = arg.partition("=")
        if not sep:
            raise ConfigError(f"{arg!r}: arguments after the run are key=value")
        if key in options:
            own[key] = value
        else:
            overrides.append(arg)
    return argv[0], own, overrides
