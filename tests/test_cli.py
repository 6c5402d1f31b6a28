"""How a command ends (`odenets.cli`): its status, or bad input in one line with its exit status and the
traceback in the log; and how `RUN key=value ...` splits into the command's options and config overrides."""

from __future__ import annotations

import errno
import logging

import pytest

from odenets.cli import run_and_options, run_command
from odenets.errors import ConfigError, WriteError
from odenets.run.checkpoints import CheckpointError


def test_a_command_that_ends_gives_its_own_status():
    assert run_command(lambda: 0) == 0
    assert run_command(lambda: 1) == 1  # e.g. revalidation: a record stayed stale


@pytest.mark.parametrize("error, status", [
    (ConfigError("depth=7; allowed: 6n + 2"), 2),
    (CheckpointError("best.ckpt is refused: it is not plain data"), 2),
    (WriteError("outputs/eval.json", OSError(errno.ENOSPC, "No space left on device")), 4),
])
def test_bad_input_is_one_line_its_status_and_the_traceback_in_the_log(error, status, capsys, caplog):
    def command() -> int:
        raise error
    with caplog.at_level(logging.DEBUG, logger="odenets.cli"), pytest.raises(SystemExit) as stop:
        run_command(command)
    assert stop.value.code == status
    assert capsys.readouterr().err.splitlines() == [f"error: {error}"]
    (logged,) = caplog.records
    assert logged.exc_info[1] is error and logged.exc_info[2] is not None  # the traceback, for the log


def test_a_bug_keeps_its_traceback():
    def command() -> int:
        raise KeyError("a bug")
    with pytest.raises(KeyError):
        run_command(command)


def test_the_run_comes_first_then_options_and_overrides():
    run, own, overrides = run_and_options(["outputs/runs/r", "which=last", "dataset.test_subset=10", "k=a=b"],
                                          "usage: x RUN", ("which", "k"))
    assert (run, own, overrides) == ("outputs/runs/r", {"which": "last", "k": "a=b"}, ["dataset.test_subset=10"])
    for argv in ([], ["which=last"]):
        with pytest.raises(ConfigError, match="^usage: x RUN$"):
            run_and_options(argv, "usage: x RUN", ("which",))
    with pytest.raises(ConfigError, match=r"^'batch': arguments after the run are key=value$"):
        run_and_options(["r", "batch"], "usage: x RUN", ("batch",))
