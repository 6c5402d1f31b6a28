"""Faults survived: resume after SIGKILL, divergence, failed jobs, atomic writes, determinism."""

from __future__ import annotations

import json
import time

import pytest

from helpers import cli, results_under
from odenets.config import compose, fingerprint
from odenets.errors import ConfigError
from odenets.fileio import atomic_open

RESUMABLE = ["epochs=3", "dataset.subset=320", "dataset.test_subset=64", "dataset.batch_size=32", "model.width=16",
             "checkpoint_every_n_steps=4", "trainer.deterministic=true", "trainer.enable_progress_bar=false",
             "dataset.crop_padding=1", "dataset.flip=true", "logger=csv"]


def _without_timings(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if not k.startswith("time/")} for e in history]


def test_resume_after_sigkill_ends_exactly_like_an_uninterrupted_run(tmp_path):
    reference = cli(f"paths.output_dir={tmp_path / 'a' / 'outputs'}", *RESUMABLE, tmp_path=tmp_path / "a", quick=False)
    assert reference.returncode == 0, reference.stderr[-2000:]
    (expected,) = results_under(tmp_path / "a").values()

    out = tmp_path / "b" / "outputs"
    args = [f"paths.output_dir={out}", *RESUMABLE]
    proc = cli(*args, tmp_path=tmp_path / "b", quick=False, popen=True)
    deadline = time.time() + 240
    while not list(out.glob("runs/*/checkpoints/last.ckpt")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.kill()  # SIGKILL: no handler runs, no result.json is written
    proc.wait()
    assert proc.returncode == -9, "the run finished before it could be killed"
    (run_dir,) = (out / "runs").iterdir()
    assert not (run_dir / "result.json").exists()

    resumed = cli(*args, tmp_path=tmp_path / "b", quick=False)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    (got,) = results_under(tmp_path / "b").values()
    assert got["resumed_from_step"] >= 4, "the rerun did not resume"
    assert (run_dir / "csv" / "version_1" / "metrics.csv").is_file(), "the resume reused (deleted) the first CSV"
    assert got["run_name"] == expected["run_name"] and got["status"] == "completed"
    assert _without_timings(got["history"]) == _without_timings(expected["history"])
    assert {k: v for k, v in got["metrics"]["final"].items() if not k.startswith("time/")} == \
        {k: v for k, v in expected["metrics"]["final"].items() if not k.startswith("time/")}


def test_deterministic_runs_give_identical_metrics(run_inprocess):
    overrides = ["trainer.deterministic=true", "dataset.crop_padding=1", "dataset.flip=true", "force=true"]
    first, _ = run_inprocess(overrides, name="first")
    second, _ = run_inprocess(overrides, name="second")
    assert first["metrics"]["final"]["test/acc"] == second["metrics"]["final"]["test/acc"]
    assert _without_timings(first["history"]) == _without_timings(second["history"])


def test_divergence_is_a_result_not_a_crash(tmp_path):
    out = cli("-m", "optimizer.lr=0.05,1e30", "optimizer.momentum=0", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    by_lr = {r["config"]["optimizer"]["lr"]: r for r in results_under(tmp_path).values()}
    assert by_lr[0.05]["status"] == "completed"
    diverged = by_lr[1e30]
    assert diverged["status"] == "diverged" and isinstance(diverged["diverged_at_step"], int)
    assert "sweep: 1 completed, 1 diverged" in out.stderr


def test_single_diverged_run_exits_zero(tmp_path):
    out = cli("optimizer.lr=1e30", "optimizer.momentum=0", tmp_path=tmp_path)
    assert out.returncode == 0
    (record,) = results_under(tmp_path).values()
    assert record["status"] == "diverged"


def test_failed_job_records_its_error_line(run_inprocess, tmp_path):
    with pytest.raises(ConfigError):
        run_inprocess(["scheme=rk4", "depth=30"])
    record = json.loads((tmp_path / "run" / "result.json").read_text())
    assert record["status"] == "failed" and record["error"].startswith("depth=30 is not valid for scheme=rk4")


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path):
    path = tmp_path / "result.json"
    path.write_text(json.dumps({"status": "completed"}))
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(path) as f:
            f.write('{"status": "runn')
            raise KeyboardInterrupt  # killed mid-write
    assert json.loads(path.read_text()) == {"status": "completed"}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_wandb_run_id_follows_the_experiment():
    a = compose(["logger=wandb", "scheme=rk4", "depth=10"])
    b = compose(["logger=wandb", "scheme=rk4", "depth=10", "trainer.enable_progress_bar=false"])
    c = compose(["logger=wandb", "scheme=rk4", "depth=18"])
    assert a.logger.wandb.id == b.logger.wandb.id == fingerprint(a)[:16] != c.logger.wandb.id
    assert a.logger.wandb.resume == "allow"
