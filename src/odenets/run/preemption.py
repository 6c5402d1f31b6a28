"""Pre-emption: the signals a scheduler sends before it kills a job ask the run to save its state and stop.

SIGTERM (what SLURM and most schedulers send a grace period before SIGKILL), SIGUSR1 (SLURM's
`--signal=USR1@90`, sent ahead of a time limit), SIGUSR2 (submitit's default) and the signal named by
`SUBMITIT_PREEMPT_SIGNAL` (submitit's setting for the signal it asks SLURM for ahead of a time limit, and sends a
local job it pre-empts: `USR1`, `HUP`, ...) only record the request here; `odenets.run.checkpoints.LastCheckpoint`
acts on it at the next optimiser step, or when an evaluation under way ends: it writes `last.ckpt` at that step
and raises `Preempted`. The run records `status: preempted` and exits with 128 + the signal's number; on
SIGUSR1/SIGUSR2 or submitit's signal under SLURM it first requeues its own job (`scontrol requeue`: submitit's
handler for that signal checkpoints and requeues too), which reruns the same command, so the job resumes from
that step in the same directory (and the same W&B run, whose id is the fingerprint's). Lightning's own SLURM
auto-requeue is switched off (`odenets.run.training`) so that one mechanism owns the checkpoint.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from odenets.errors import ConfigError

BOOKKEEPING = True  # records or checks runs, computes none of their numbers (odenets.reporting.staleness)
log = logging.getLogger("odenets")
SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
REQUEUE_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)  # ahead of a time limit: the job should come back
SUBMITIT_SIGNAL = "SUBMITIT_PREEMPT_SIGNAL"  # submitit's environment variable: a signal's name without SIG


def submitit_signal() -> signal.Signals | None:
    """The signal `SUBMITIT_PREEMPT_SIGNAL` names (as submitit reads it: `USR2` is SIGUSR2), or None if unset."""
    name = os.environ.get(SUBMITIT_SIGNAL)
    if not name:
        return None
    signum = getattr(signal, f"SIG{name}", None)
    if not isinstance(signum, signal.Signals) or signum in (signal.SIGKILL, signal.SIGSTOP):
        raise ConfigError(f"{SUBMITIT_SIGNAL}={name!r} is not a signal a run can catch; expected a name without "
                          f"SIG, e.g. USR2, USR1, TERM, HUP")
    return signum


def signals() -> tuple[signal.Signals, ...]:
    """The signals that stop a run: `SIGNALS` and submitit's."""
    return tuple(dict.fromkeys((*SIGNALS, *filter(None, [submitit_signal()]))))


def requeue_signals() -> tuple[signal.Signals, ...]:
    """The signals after which a SLURM job requeues itself: `REQUEUE_SIGNALS` and submitit's (its handler
    for that signal requeues: it announces a time limit or a pre-emption the job comes back from)."""
    return tuple(dict.fromkeys((*REQUEUE_SIGNALS, *filter(None, [submitit_signal()]))))


class Preempted(Exception):
    """Training stopped on a signal after `last.ckpt` was written at `step`."""

    def __init__(self, signum: int, step: int) -> None:
        super().__init__(f"preempted by {signal.Signals(signum).name} at step {step}")
        self.signum, self.step = signum, step


_requested: list[int] = []


def requested() -> int | None:
    """The first stop signal received since `stop_signals()` was entered, or None."""
    return _requested[0] if _requested else None


def _record(signum: int, frame) -> None:
    if not _requested:
        log.warning("received %s: saving the run's state at the next step", signal.Signals(signum).name)
    _requested.append(signum)


def install() -> None:
    """(Re)install the recording handler; Lightning replaces SIGTERM's while `fit` starts, so the checkpoint
    callback calls this again when training starts."""
    if threading.current_thread() is threading.main_thread():
        for signum in signals():
            signal.signal(signum, _record)


@contextmanager
def stop_signals() -> Iterator[None]:
    """Record stop signals for the block (the handlers before it are put back after it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in signals()}
    _requested.clear()
    install()
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def requeue(signum: int) -> None:
    """Under SLURM, put this job back in the queue when the signal announces a time limit (USR1/USR2, or
    submitit's); a SIGTERM is a pre-emption SLURM requeues itself, a cancellation, or a time limit reached."""
    job = os.environ.get("SLURM_JOB_ID")
    if signum not in requeue_signals() or not job:
        return
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    try:
        done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        log.warning("could not requeue SLURM job %s: %s", job, e)
        return
    if done.returncode:
        log.warning("could not requeue SLURM job %s: %s", job, done.stderr.strip() or done.returncode)
    else:
        log.info("requeued SLURM job %s; it resumes from last.ckpt", job)
