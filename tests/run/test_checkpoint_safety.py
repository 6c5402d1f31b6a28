"""Checkpoints are data, never code (issue 26): a planted pickle payload in a run directory's checkpoints is refused
by evaluation, resume and verify-results without running; what the project writes loads as plain data; checkpoints
written before (numpy RNG states) still load and continue their streams."""

from __future__ import annotations

import io
import os
import random
import runpy
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import REPO, cli
from odenets.errors import ConfigError
from odenets.evaluate import load_trained
from odenets.reporting.rerun import LOG as RERUN_LOG
from odenets.reporting.rerun import rerun
from odenets.results import read_result, write_result
from odenets.run.checkpoints import (
    BEST,
    CHECKPOINTS,
    LAST,
    PREVIOUS,
    AtomicCheckpointIO,
    CheckpointError,
    UnsafeCheckpoint,
    load_checkpoint,
    resume_point,
)
from odenets.run.training import RandomState


class Payload:
    """What an attacker pickles: loading it runs `touch <marker>`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def plant(run_dir: Path, marker: Path, names=(BEST, LAST, PREVIOUS)) -> None:
    """Replace the run's checkpoints with payloads shaped like checkpoints."""
    (run_dir / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
    for name in names:
        torch.save({"global_step": 1, "loops": {}, "state_dict": Payload(marker)}, run_dir / CHECKPOINTS / name)


def test_the_payload_runs_when_loaded_the_old_way(tmp_path):
    """The test's own premise: `weights_only=False` (what every load did) runs it."""
    marker = tmp_path / "MARKER"
    plant(tmp_path, marker, names=(BEST,))
    torch.load(tmp_path / CHECKPOINTS / BEST, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("name", [BEST, LAST, PREVIOUS])
def test_a_payload_is_refused_in_one_line_naming_the_file_and_never_runs(tmp_path, name):
    marker = tmp_path / "MARKER"
    plant(tmp_path, marker, names=(name,))
    path = tmp_path / CHECKPOINTS / name
    with pytest.raises(UnsafeCheckpoint) as refused:
        load_checkpoint(path)
    assert isinstance(refused.value, ConfigError)  # bad input: exit status 2 on the command line
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"{path} is refused: it is not plain data (it calls ")
    assert "system" in message and not marker.exists()
    with pytest.raises(UnsafeCheckpoint):  # Lightning's resume reads through the same loader
        AtomicCheckpointIO().load_checkpoint(path, weights_only=False)
    assert not marker.exists()


def test_what_a_run_writes_is_plain_data(run_inprocess):
    """Every entry of a real checkpoint (Lightning's loops, callbacks, optimizer and MultiStepLR state, our RNG
    states and stamp) loads with torch's default allow-list alone, nothing added."""
    _, run_dir = run_inprocess(["trainer.deterministic=true"])
    for name in (BEST, LAST):
        checkpoint = torch.load(run_dir / CHECKPOINTS / name, map_location="cpu", weights_only=True)
        assert {"state_dict", "loops", "callbacks", "optimizer_states", "lr_schedulers", "odenets"} <= set(checkpoint)
        assert isinstance(checkpoint["callbacks"]["RandomState"]["numpy"]["keys"], torch.Tensor)


def test_evaluation_refuses_a_payload_with_exit_2_and_never_runs_it(run_inprocess, tmp_path):
    _, run_dir = run_inprocess([])
    marker = tmp_path / "MARKER"
    plant(run_dir, marker)
    for which in ("best", "last"):
        with pytest.raises(UnsafeCheckpoint, match=f"{run_dir / CHECKPOINTS / which}.ckpt is refused"):
            load_trained(run_dir, which)
        out = cli(str(run_dir), f"which={which}", tmp_path=tmp_path, quick=False, entry=["-m", "odenets.evaluate"])
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
        (line,) = out.stderr.strip().splitlines()
        assert line.startswith(f"error: {run_dir / CHECKPOINTS / which}.ckpt is refused: it is not plain data")
    assert not marker.exists()


def test_a_resume_counts_payloads_as_unreadable_and_falls_back(run_inprocess, tmp_path, caplog):
    """An unfinished run whose checkpoints were replaced: each is named in the warning, none runs, and the run
    starts from scratch; with an intact `last.prev.ckpt` it resumes from that one."""
    first, run_dir = run_inprocess(["trainer.deterministic=true"])
    (run_dir / "result.json").unlink()  # unfinished: the rerun resumes
    marker = tmp_path / "MARKER"
    last = run_dir / CHECKPOINTS / LAST
    last.replace(last.with_name(PREVIOUS))
    plant(run_dir, marker, names=(LAST,))
    record, _ = run_inprocess(["trainer.deterministic=true"])
    assert not marker.exists()
    warning = next(r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "refused" in r.getMessage())
    assert f"{last} is refused: it is not plain data" in warning and "resuming from last.prev.ckpt" in warning
    assert record["status"] == "completed" and record["resumed_from_step"] == first["history"][-1]["step"]

    (run_dir / "result.json").unlink()
    plant(run_dir, marker)  # all three
    caplog.clear()
    record, _ = run_inprocess(["trainer.deterministic=true"])
    assert not marker.exists() and record["status"] == "completed" and "resumed_from_step" not in record
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "refused" in r.getMessage()]
    assert all(f"{run_dir / CHECKPOINTS / n} is refused" in warning for n in (LAST, PREVIOUS, BEST))
    assert warning.endswith("no usable checkpoint left: starting from scratch")


@pytest.mark.slow
def test_rerunning_the_training_command_never_runs_a_payload(tmp_path):
    """The issue's report, end to end: rerunning the command of an unfinished run whose checkpoints were replaced."""
    run_dir = tmp_path / "run"
    first = cli(f"hydra.run.dir={run_dir}", tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    (run_dir / "result.json").unlink()
    marker = tmp_path / "MARKER"
    plant(run_dir, marker)
    again = cli(f"hydra.run.dir={run_dir}", tmp_path=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "no usable checkpoint left: starting from scratch" in again.stdout + again.stderr
    assert not marker.exists() and read_result(run_dir)["status"] == "completed"


@pytest.mark.slow
def test_verify_results_never_runs_a_payload(tmp_path):
    """`make verify-results` reruns a committed record where payloads wait in its run directory (it starts over,
    `force=true`); the same rerun without `force` (`odenets.reporting.rerun`, as `make revalidate` reruns) resumes
    there, so it checks the payloads, and refuses them."""
    verify = runpy.run_path(str(REPO / "scripts" / "verify_results.py"))
    chosen = [r for r in verify["load_runs"](verify["REPRODUCED"] / "cpu")
              if r.get("status") == "completed" and r["config"]["dataset"]["name"] == "sine"]
    record = min(chosen, key=lambda r: r.get("wall_time_s", float("inf")))
    out = tmp_path / "out"
    run_dir = out / "runs" / record["run_name"]
    marker = tmp_path / "MARKER"
    for start_over in (True, False):
        plant(run_dir, marker)
        write_result(run_dir, {"fingerprint": record["fingerprint"], "status": "running"})  # unfinished: resumes
        if start_over:
            assert verify["verify"](record, 0.01, out) is None
        else:
            done = rerun(record, out)
            assert done.failure is None and done.result["status"] == "completed", done.failure
            assert "no usable checkpoint left: starting from scratch" in (out / RERUN_LOG).read_text()
        assert not marker.exists()


# --------------------------------------------------------------------------- damaged files, old checkpoints
def test_a_torn_or_foreign_file_is_one_line_naming_it(tmp_path):
    buffer = io.BytesIO()
    torch.save({"global_step": 3, "state_dict": {"w": torch.arange(4096.0)}, "loops": {}}, buffer)
    cases = {"torn.ckpt": buffer.getvalue()[:3000], "text.ckpt": b"not a checkpoint\n"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=f"^{tmp_path / name} is unreadable \\(") as e:
            load_checkpoint(tmp_path / name)
        assert "\n" not in str(e.value) and not isinstance(e.value, UnsafeCheckpoint)
    torch.save(torch.arange(3), tmp_path / "tensor.ckpt")
    with pytest.raises(CheckpointError, match="is not a checkpoint \\(it holds a Tensor\\)"):
        load_checkpoint(tmp_path / "tensor.ckpt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.ckpt")


def test_a_bug_while_checking_a_checkpoint_is_not_called_unreadable(tmp_path, monkeypatch):
    """resume_point falls back only for what is wrong with a file; an error of our own surfaces."""
    plant(tmp_path, tmp_path / "MARKER", names=(LAST,))

    def bug(path, **kwargs):
        raise TypeError("a bug of ours")

    monkeypatch.setattr("odenets.run.checkpoints.load_checkpoint", bug)
    with pytest.raises(TypeError, match="a bug of ours"):
        resume_point(tmp_path, {"fingerprint": "f" * 64, "overrides": []})


def _as_before(checkpoint: dict, numpy_state: tuple) -> dict:
    """`checkpoint` as the RandomState callback wrote it before its numpy state became a tensor."""
    old = {**checkpoint, "callbacks": dict(checkpoint["callbacks"])}
    old["callbacks"]["RandomState"] = {**checkpoint["callbacks"]["RandomState"], "numpy": numpy_state}
    return old


def _rename_in_header(path: Path, old: bytes, new: bytes) -> None:
    """Rewrite the pickled header's text (torch pickles with protocol 2: a global is `c<module>\\n<name>\\n`)."""
    with zipfile.ZipFile(path) as archive:
        records = [(i.filename, archive.read(i.filename)) for i in archive.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in records:
            archive.writestr(name, data.replace(old, new) if name.endswith("data.pkl") else data)


def test_checkpoints_with_numpy_rng_states_still_load_and_continue_the_streams(run_inprocess, tmp_path):
    _, run_dir = run_inprocess(["trainer.deterministic=true"])
    checkpoint = load_checkpoint(run_dir / CHECKPOINTS / LAST)
    np.random.seed(7)
    np.random.normal()  # a cached gaussian, too
    saved = np.random.get_state()
    expected = np.random.random(5)
    old = tmp_path / "old.ckpt"
    torch.save(_as_before(checkpoint, saved), old)
    with pytest.raises(Exception, match="numpy"):  # what old checkpoints hold beyond torch's own allow-list
        torch.load(old, weights_only=True)
    for numpy_module in (b"numpy._core", b"numpy.core"):  # written by numpy 2, and by numpy 1.x
        _rename_in_header(old, b"cnumpy._core.multiarray\n", b"c" + numpy_module + b".multiarray\n")
        state = load_checkpoint(old)["callbacks"]["RandomState"]
        np.random.seed(0)
        RandomState().load_state_dict(state)
        assert np.array_equal(np.random.random(5), expected)


def test_the_rng_states_round_trip_through_a_checkpoint(tmp_path):
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    np.random.normal()
    state = RandomState().state_dict()
    expected = (torch.rand(3), np.random.random(3), random.random())
    torch.save({"state": state}, tmp_path / "rng.ckpt")
    RandomState().load_state_dict(load_checkpoint(tmp_path / "rng.ckpt")["state"])
    got = (torch.rand(3), np.random.random(3), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]


def test_a_run_resumes_from_a_checkpoint_written_before_the_change(run_inprocess):
    """An unfinished run whose last.ckpt holds the old numpy RNG state resumes from it."""
    first, run_dir = run_inprocess(["trainer.deterministic=true", "epochs=2"])
    last = run_dir / CHECKPOINTS / LAST
    checkpoint = load_checkpoint(last)
    state = checkpoint["callbacks"]["RandomState"]["numpy"]
    numpy_state = ("MT19937", state["keys"].numpy().astype(np.uint32), state["pos"], state["has_gauss"],
                   state["cached_gaussian"])
    torch.save(_as_before(checkpoint, numpy_state), last)
    (run_dir / "result.json").unlink()
    record, _ = run_inprocess(["trainer.deterministic=true", "epochs=2"])
    assert record["status"] == "completed" and record["resumed_from_step"] == first["history"][-1]["step"]
