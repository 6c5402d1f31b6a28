"""Signals and errors (issue 26): submitit's pre-emption signal, a failed sweep job's traceback in the logs (the
terminal keeps one line), and `except` blocks that catch only what the library call they guard raises, so a bug
of ours surfaces as itself, never as advice to the user."""

from __future__ import annotations

import io
import logging
import signal
import subprocess

import pytest
import torch

from helpers import cli, results_under
from helpers.dataset_files import patch_checksums, write_cifar10
from odenets.config import compose
from odenets.data import build_datamodule
from odenets.errors import ConfigError, OneLineFormatter
from odenets.run import preemption
from odenets.run.lifecycle import SWEEP_LOG
from odenets.run.validation import validate_sweep


# --------------------------------------------------------------------------- submitit's signal
def test_submitit_preempt_signal_is_a_stop_and_requeue_signal(monkeypatch):
    monkeypatch.delenv(preemption.SUBMITIT_SIGNAL, raising=False)
    assert preemption.submitit_signal() is None and signal.SIGHUP not in preemption.signals()
    monkeypatch.setenv(preemption.SUBMITIT_SIGNAL, "HUP")  # as submitit spells it: SIG + the value
    assert preemption.submitit_signal() == signal.SIGHUP
    assert preemption.signals() == (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP)
    assert signal.SIGHUP in preemption.requeue_signals() and signal.SIGTERM not in preemption.requeue_signals()
    monkeypatch.setenv(preemption.SUBMITIT_SIGNAL, "USR2")  # submitit's default: nothing added twice
    assert preemption.signals() == preemption.SIGNALS


@pytest.mark.parametrize("value", ["SIGUSR2", "KILL", "STOP", "NOPE", "_DFL"])
def test_a_signal_no_run_can_catch_is_one_line(monkeypatch, value):
    monkeypatch.setenv(preemption.SUBMITIT_SIGNAL, value)
    with pytest.raises(ConfigError, match=f"^SUBMITIT_PREEMPT_SIGNAL='{value}' is not a signal a run can catch"):
        preemption.signals()


def test_submitits_signal_requeues_the_slurm_job(monkeypatch):
    calls = []
    monkeypatch.setattr(preemption.subprocess, "run",
                        lambda command, **kw: calls.append(command) or subprocess.CompletedProcess(command, 0))
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    monkeypatch.delenv(preemption.SUBMITIT_SIGNAL, raising=False)
    preemption.requeue(signal.SIGHUP)
    assert calls == []  # not a requeue signal unless submitit says so
    monkeypatch.setenv(preemption.SUBMITIT_SIGNAL, "HUP")
    preemption.requeue(signal.SIGHUP)
    assert calls == [["scontrol", "requeue", "42"]]


def test_the_recording_handler_covers_submitits_signal(monkeypatch):
    monkeypatch.setenv(preemption.SUBMITIT_SIGNAL, "HUP")
    before = signal.getsignal(signal.SIGHUP)
    with preemption.stop_signals():
        signal.raise_signal(signal.SIGHUP)  # would end the process under the default handler
        assert preemption.requested() == signal.SIGHUP
    assert signal.getsignal(signal.SIGHUP) == before


# --------------------------------------------------------------------------- tracebacks: logs, not the terminal
@pytest.mark.parametrize("console_first", [True, False])
def test_the_console_format_leaves_the_traceback_to_the_log_file(console_first):
    console, file = io.StringIO(), io.StringIO()
    handlers = [logging.StreamHandler(console), logging.StreamHandler(file)]
    handlers[0].setFormatter(OneLineFormatter("%(levelname)s - %(message)s"))
    handlers[1].setFormatter(logging.Formatter("%(levelname)s - %(message)s"))
    logger = logging.getLogger(f"test-one-line-{console_first}")
    logger.propagate = False
    for handler in handlers if console_first else handlers[::-1]:  # whichever formats (and caches) it first
        logger.addHandler(handler)
    try:
        raise KeyError("boom")
    except KeyError as e:
        logger.error("job not run to the end: %s", e, exc_info=e)
    assert console.getvalue() == "ERROR - job not run to the end: 'boom'\n"
    assert file.getvalue().startswith("ERROR - job not run to the end: 'boom'\nTraceback (most recent call last):")
    assert file.getvalue().rstrip().endswith("KeyError: 'boom'")


@pytest.mark.slow
def test_a_failed_sweep_job_keeps_one_line_on_the_terminal_and_its_traceback_in_the_logs(tmp_path):
    out = cli("-m", "scheme=rk4", "depth=10,30", "logger=none", tmp_path=tmp_path)
    assert out.returncode == 1, out.stderr[-2000:]
    terminal = out.stdout + out.stderr
    assert "Traceback" not in terminal
    assert terminal.count("job not run to the end: depth=30 is not valid for scheme=rk4") == 1
    failed = next(p for p in (tmp_path / "outputs" / "runs").glob("*-d30-*"))
    assert f"tracebacks: {tmp_path / 'outputs' / 'runs' / SWEEP_LOG}" in out.stderr
    for log in (failed / "train.log", tmp_path / "outputs" / "runs" / SWEEP_LOG):
        text = log.read_text()
        assert "Traceback (most recent call last):" in text and "in blocks_for_depth" in text, log
        assert "odenets.errors.ConfigError: depth=30 is not valid for scheme=rk4" in text, log
    assert f"{failed.name}: job not run to the end" in (tmp_path / "outputs" / "runs" / SWEEP_LOG).read_text()
    assert {r["status"] for r in results_under(tmp_path).values()} == {"completed", "failed"}


# --------------------------------------------------------------------------- a bug of ours stays a bug
def test_a_bug_in_our_tensor_conversion_is_not_blamed_on_the_files(tmp_path, monkeypatch):
    patch_checksums(monkeypatch, cifar10=write_cifar10(tmp_path))
    dm = build_datamodule(compose(["dataset=cifar10", f"paths.data_dir={tmp_path}"]).dataset)

    def bug(*args):
        raise RuntimeError("a bug in our conversion")

    monkeypatch.setattr(torch, "from_numpy", bug)  # torchvision's CIFAR reader itself never calls it
    with pytest.raises(RuntimeError, match="a bug in our conversion"):
        dm.setup()


def test_a_bug_composing_a_sweeps_jobs_is_not_called_an_unread_key(monkeypatch):
    def bug(overrides):
        raise AttributeError("a bug in compose_row")

    monkeypatch.setattr("odenets.config.compose_row", bug)
    with pytest.raises(AttributeError, match="a bug in compose_row"):
        validate_sweep(["scheme=euler,heun_ext", "alpha=0.8"])


def test_a_job_that_cannot_be_composed_is_left_to_fail_on_its_own():
    validate_sweep(["scheme=rk5,heun_ext", "alpha=0.8"])  # rk5 fails in its job; heun_ext reads alpha


def test_a_bug_reading_the_ecg_cache_is_not_a_silent_rebuild(tmp_path, monkeypatch):
    import numpy as np

    import odenets.data.ecg as ecg

    params = ecg.BeatParams()
    beats = ecg.RecordBeats(x=np.zeros((2, params.length), np.float32), y=np.array([0, 1]),
                            annotated=np.array([1, 1, 0, 0, 0]), lead="MLII")
    file = tmp_path / "900.npz"
    ecg._write_cache(file, beats, "source")
    assert ecg._read_cache(file, "source", params).y.tolist() == [0, 1]
    file.write_bytes(file.read_bytes()[:100])
    assert ecg._read_cache(file, "source", params) is None  # a truncated cache: rebuilt
    ecg._write_cache(file, beats, "source")

    def bug(*arrays):
        raise TypeError("a bug in our digest")

    monkeypatch.setattr(ecg, "_digest", bug)
    with pytest.raises(TypeError, match="a bug in our digest"):
        ecg._read_cache(file, "source", params)


def test_a_bug_around_the_ecg_download_is_not_called_a_failed_download(tmp_path, monkeypatch):
    import wfdb

    from odenets.data.ecg import MITBIHDataModule

    def bug(*args, **kwargs):
        raise AttributeError("a bug in the call")

    dm = MITBIHDataModule(root=str(tmp_path), records_dir=str(tmp_path / "mitdb"), records=[100])
    monkeypatch.setattr(wfdb, "dl_database", bug)
    with pytest.raises(AttributeError, match="a bug in the call"):
        dm.prepare_data()
    monkeypatch.setattr(wfdb, "dl_database", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("no network")))
    with pytest.raises(ConfigError, match=r"download failed \(no network\)"):
        dm.prepare_data()
