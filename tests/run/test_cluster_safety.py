"""Runs that survive a cluster (issue 19): one run per directory, one experiment per directory, checkpoints a
resume can always use, pre-emption, file-system errors in one line, last.ckpt at every epoch end, and sweeps
over keys that only some jobs read."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

from helpers import cli, results_under
from odenets.errors import ConfigError, RunInUse
from odenets.run.checkpoints import LAST, PREVIOUS, STAMP, inspect, resume_point
from odenets.run.lock import LOCK_FILE, run_lock
from odenets.run.validation import validate_sweep

# 640 digits in batches of 32: 20 optimiser steps per epoch, deterministic, a few seconds in all
STEPPED = ["epochs=3", "dataset.subset=640", "dataset.test_subset=64", "dataset.batch_size=32", "model.width=16",
           "trainer.deterministic=true", "trainer.enable_progress_bar=false", "dataset.crop_padding=1",
           "dataset.flip=true", "logger=csv"]


def _metrics(record: dict) -> tuple:
    strip = lambda d: {k: v for k, v in d.items() if not k.startswith("time/")}
    return strip(record["metrics"]["final"]), [strip(e) for e in record["history"]]


def _error_line(out: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    return out.stderr.strip().splitlines()[-1]


def _wait_for(path_glob, root: Path, proc: subprocess.Popen, timeout: float = 240) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = list(root.glob(path_glob))
        if found:
            return found[0]
        assert proc.poll() is None, "the run ended before what the test waits for appeared"
        time.sleep(0.02)
    raise AssertionError(f"{path_glob} did not appear")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("reference")
    out = cli(f"paths.output_dir={tmp / 'outputs'}", "checkpoint_every_n_steps=4", *STEPPED, tmp_path=tmp, quick=False)
    assert out.returncode == 0, out.stderr[-2000:]
    (record,) = results_under(tmp).values()
    return record


# --------------------------------------------------------------------------- 1. one run per directory
def test_a_second_process_for_a_run_directory_exits_3_naming_the_holder(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with run_lock(run_dir):
        out = cli(f"hydra.run.dir={run_dir}", tmp_path=tmp_path)
    assert out.returncode == 3
    line = _error_line(out)
    assert line.startswith(f"error: {run_dir} is in use by pid {os.getpid()} on host {socket.gethostname()}"), line
    assert not (run_dir / "result.json").exists() and not (run_dir / "checkpoints").exists()


def test_wait_for_lock_waits_then_runs(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with run_lock(run_dir):
        proc = cli(f"hydra.run.dir={run_dir}", "wait_for_lock=true", tmp_path=tmp_path, popen=True)
        time.sleep(8)  # the waiter starts, composes, and blocks on the lock
        assert proc.poll() is None and not (run_dir / "result.json").exists()
    assert proc.wait(timeout=240) == 0
    assert json.loads((run_dir / "result.json").read_text())["status"] == "completed"


def test_a_killed_holder_never_leaves_a_stale_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from odenets.run.lock import run_lock\n"
        f"with run_lock({str(tmp_path)!r}):\n    print('held', flush=True); time.sleep(600)")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunInUse, match=f"pid {holder.pid} "):
        with run_lock(tmp_path):
            pass
    holder.kill()  # SIGKILL: no cleanup runs, the kernel releases the lock
    holder.wait()
    with run_lock(tmp_path):
        assert f"pid {os.getpid()} " in (tmp_path / LOCK_FILE).read_text()


# --------------------------------------------------------------------------- 2. checkpoints a resume can use
def _checkpoint(path: Path, step: int, fingerprint: str = "f" * 64) -> None:
    torch.save({"global_step": step, "state_dict": {"w": torch.arange(256.0)}, "loops": {},
                STAMP: {"fingerprint": fingerprint, "overrides": ["seed=1"]}}, path)


def test_a_torn_last_checkpoint_falls_back_with_one_warning(tmp_path, caplog):
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    _checkpoint(ckpt / PREVIOUS, 40)
    _checkpoint(ckpt / LAST, 50)
    data = (ckpt / LAST).read_bytes()
    (ckpt / LAST).write_bytes(data[: len(data) // 2])  # torn mid-write
    stamp = {"fingerprint": "f" * 64, "overrides": []}
    assert resume_point(tmp_path, stamp) == (str(ckpt / PREVIOUS), 40)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert f"{ckpt / LAST} is unreadable" in warning and "resuming from last.prev.ckpt at step 40" in warning
    # a flipped byte inside a record fails its checksum, though the file is whole
    with zipfile.ZipFile(ckpt / PREVIOUS) as archive:
        weights = next(i for i in archive.infolist() if i.filename.endswith("data/0"))
    flipped = bytearray((ckpt / PREVIOUS).read_bytes())
    local = weights.header_offset  # local header: 30 bytes, then the name and extra field it gives the lengths of
    start = local + 30 + int.from_bytes(flipped[local + 26:local + 28], "little") + \
        int.from_bytes(flipped[local + 28:local + 30], "little")
    flipped[start + 100] ^= 0xFF
    (ckpt / PREVIOUS).write_bytes(bytes(flipped))
    caplog.clear()
    assert resume_point(tmp_path, stamp) == (None, None)
    assert "no usable checkpoint left: starting from scratch" in caplog.records[-1].getMessage()


def test_resume_after_a_torn_checkpoint_ends_like_an_uninterrupted_run(tmp_path, uninterrupted):
    out = tmp_path / "outputs"
    args = [f"paths.output_dir={out}", "checkpoint_every_n_steps=4", *STEPPED]
    proc = cli(*args, tmp_path=tmp_path, quick=False, popen=True)
    previous = _wait_for(f"runs/*/checkpoints/{PREVIOUS}", out, proc)
    proc.kill()
    proc.wait()
    last = previous.with_name(LAST)
    last.write_bytes(last.read_bytes()[:5000])  # a node that died mid-write, without atomic rename
    resumed = cli(*args, tmp_path=tmp_path, quick=False)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    log = resumed.stdout + resumed.stderr
    assert f"{last} is unreadable" in log and "resuming from last.prev.ckpt" in log
    (record,) = results_under(tmp_path).values()
    assert record["resumed_from_step"] >= 4 and _metrics(record) == _metrics(uninterrupted)


# --------------------------------------------------------------------------- 3. pre-emption
@pytest.mark.parametrize("signum,submitit", [(signal.SIGTERM, None), (signal.SIGUSR1, None), (signal.SIGHUP, "HUP")])
def test_a_stop_signal_saves_the_step_and_the_rerun_ends_like_an_uninterrupted_run(tmp_path, uninterrupted, signum,
                                                                                   submitit, monkeypatch):
    """SIGHUP is no stop signal of ours: it is one where submitit names it (`SUBMITIT_PREEMPT_SIGNAL=HUP`)."""
    if submitit:
        monkeypatch.setenv("SUBMITIT_PREEMPT_SIGNAL", submitit)
    out = tmp_path / "outputs"
    args = [f"paths.output_dir={out}", "checkpoint_every_n_steps=4", *STEPPED]
    proc = cli(*args, tmp_path=tmp_path, quick=False, popen=True)
    _wait_for(f"runs/*/checkpoints/{LAST}", out, proc)  # training is under way (step 4 of 60)
    proc.send_signal(signum)
    assert proc.wait(timeout=60) == 128 + signum
    (stopped,) = results_under(tmp_path).values()
    step = stopped["preempted"]["step"]
    assert stopped["status"] == "preempted" and stopped["preempted"]["signal"] == signal.Signals(signum).name
    (last,) = out.glob(f"runs/*/checkpoints/{LAST}")
    assert inspect(last)[0] == step and step % 20, "last.ckpt holds the step the signal stopped at, mid-epoch"

    resumed = cli(*args, tmp_path=tmp_path, quick=False)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    (record,) = results_under(tmp_path).values()
    assert record["status"] == "completed" and record["resumed_from_step"] == step
    assert _metrics(record) == _metrics(uninterrupted)


# --------------------------------------------------------------------------- 4. the file system
def _mount_tmpfs(path: Path, options: str) -> None:
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a small file system here ({done.stderr.strip() or 'mount failed'}); needs root")


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "size=160k")
    yield disk
    subprocess.run(["umount", str(disk)], check=False)


def test_a_full_disk_is_one_line_and_result_json_is_valid(tmp_path, small_disk):
    out = cli(f"hydra.run.dir={small_disk / 'run'}", "model.width=16", tmp_path=tmp_path)
    assert out.returncode == 4
    line = _error_line(out)
    assert line.startswith(f"error: cannot write checkpoint {small_disk / 'run'}") and \
        line.endswith("No space left on device"), line
    result = small_disk / "run" / "result.json"
    if result.exists():  # absent or whole, never half-written
        assert json.loads(result.read_text())["status"] == "failed"


@pytest.mark.parametrize("where", ["/dev/null/run", "read-only"])
def test_an_impossible_or_read_only_output_path_is_one_line(tmp_path, where):
    if where == "read-only":
        _mount_tmpfs(tmp_path / "ro", "ro,size=64k")
        where = str(tmp_path / "ro" / "run")
    try:
        out = cli(f"hydra.run.dir={where}", tmp_path=tmp_path)
    finally:
        subprocess.run(["umount", str(tmp_path / "ro")], check=False, capture_output=True)
    assert out.returncode == 4
    assert _error_line(out) in (f"error: cannot write {where}: Not a directory",
                                f"error: cannot write {where}: Read-only file system")


# --------------------------------------------------------------------------- 5. one experiment per directory
def test_a_directory_of_another_experiment_is_refused_and_force_starts_over(tmp_path):
    run_dir = tmp_path / "by-hand"
    first = cli(f"hydra.run.dir={run_dir}", "seed=1", tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    before = json.loads((run_dir / "result.json").read_text())
    other = cli(f"hydra.run.dir={run_dir}", "seed=2", tmp_path=tmp_path)
    assert other.returncode == 2
    line = _error_line(other)
    assert f"{run_dir} holds another experiment: fingerprint {before['fingerprint'][:8]} there" in line
    assert "only there: seed=1" in line and "only here: seed=2" in line and "force=true" in line
    assert json.loads((run_dir / "result.json").read_text()) == before  # untouched
    # a torn result.json left by the first run would not hide its checkpoints' identity
    (run_dir / "result.json").unlink()
    with pytest.raises(ConfigError, match="holds another experiment"):
        resume_point(run_dir, {"fingerprint": "0" * 64, "overrides": ["seed=2"]})
    forced = cli(f"hydra.run.dir={run_dir}", "seed=2", "force=true", tmp_path=tmp_path)
    assert forced.returncode == 0, forced.stderr[-2000:]
    after = json.loads((run_dir / "result.json").read_text())
    assert after["config"]["seed"] == 2 and "resumed_from_step" not in after


# --------------------------------------------------------------------------- 6. last.ckpt after every epoch
def test_last_checkpoint_is_written_at_every_epoch_end(tmp_path):
    out = tmp_path / "outputs"
    args = [f"paths.output_dir={out}", "checkpoint_every_n_steps=100000", *STEPPED[1:], "epochs=5"]
    proc = cli(*args, tmp_path=tmp_path, quick=False, popen=True)
    last = _wait_for(f"runs/*/checkpoints/{LAST}", out, proc)
    seen = set()
    while proc.poll() is None:
        try:
            seen.add(inspect(last)[0])
        except Exception:  # noqa: BLE001  (being replaced right now)
            pass
        time.sleep(0.02)
    assert proc.returncode == 0
    seen.add(inspect(last)[0])
    assert seen <= {20, 40, 60, 80, 100} and 100 in seen and len(seen) >= 2, seen


# --------------------------------------------------------------------------- 7. sweeps over keys some jobs read
def test_a_sweep_applies_a_key_where_it_means_something(tmp_path):
    out = cli("-m", "scheme=euler,heun_ext", "alpha=0.8", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    records = {r["config"]["scheme"]["name"]: r for r in results_under(tmp_path).values()}
    assert records["heun_ext"]["config"]["scheme"]["alpha"] == 0.8 and records["euler"]["status"] == "completed"
    assert "alpha is left out of this job: this run does not read it (model=horesnet, scheme=euler); " \
           "model=heunnet_authors, scheme=heun_ext read alpha" in out.stdout + out.stderr
    plain = cli("scheme=euler", tmp_path=tmp_path)  # the same experiment: alpha is not in its fingerprint
    assert "already completed, skipping" in plain.stdout + plain.stderr, plain.stderr[-2000:]


def test_a_key_no_job_of_a_sweep_reads_is_refused_before_any_job_runs(tmp_path):
    out = cli("-m", "model=lstm,gru", "dataset=sine", "alpha=0.8", tmp_path=tmp_path)
    assert out.returncode == 2
    assert _error_line(out) == "error: alpha is set but no job of this sweep reads it " \
                               "(model=heunnet_authors, scheme=heun_ext read it); remove it"
    assert not (tmp_path / "outputs" / "runs").exists()



def test_a_search_is_checked_for_the_keys_it_sweeps():
    validate_sweep(["hparams_search=heun_alpha", "alpha=interval(0.2, 0.4)"])  # an interval: its lower end
    with pytest.raises(ConfigError, match="alpha is set but no job of this sweep reads it"):
        validate_sweep(["hparams_search=heun_alpha", "model=lstm", "dataset=sine"])  # alpha comes from the search
