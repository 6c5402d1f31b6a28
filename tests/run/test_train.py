"""End to end: training on every dataset, result.json, the CLI (runs, reruns, sweeps, DDP on
two CPU processes, wandb offline, bad input)."""

from __future__ import annotations

import json

import pytest

from helpers import cli, results_under
from helpers.dataset_files import patch_checksums, write_cifar10, write_cifar100, write_mnist, write_svhn

RESULT_KEYS = {"config", "fingerprint", "status", "params", "metrics", "epochs", "wall_time_s", "history"}


def check_completed(record: dict, epochs: int = 1) -> None:
    assert RESULT_KEYS <= set(record) and record["status"] == "completed", record.get("error")
    assert record["epochs"] == epochs and len(record["history"]) == epochs
    assert {"test/acc", "test/loss", "train/acc", "train/loss"} <= set(record["metrics"]["final"])
    assert record["metrics"]["best"]["test/acc"] >= record["metrics"]["final"]["test/acc"]
    assert record["params"] > 0 and len(record["fingerprint"]) == 64


@pytest.mark.parametrize("name,writer", [
    ("digits", None), ("mnist", write_mnist), ("cifar10", write_cifar10), ("cifar100", write_cifar100),
    ("svhn", write_svhn),
])
def test_a_few_training_steps_per_dataset(run_inprocess, tmp_path, monkeypatch, name, writer):
    if writer is not None:
        sums = writer(tmp_path / "data")
        if name in ("cifar10", "cifar100", "svhn"):
            patch_checksums(monkeypatch, **{name: sums})
    record, run_dir = run_inprocess([f"dataset={name}", f"paths.data_dir={tmp_path / 'data'}", "scheme=midpoint",
                                     "depth=6"])
    check_completed(record)
    on_disk = json.loads((run_dir / "result.json").read_text())
    assert on_disk["fingerprint"] == record["fingerprint"] and on_disk["config"]["dataset"]["name"] == name
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "checkpoints" / "best.ckpt").is_file()


def test_rk8_adaptive_learns_its_steps(run_inprocess):
    record, _ = run_inprocess(["scheme=rk8_adaptive", "depth=30", "dataset.subset=16", "dataset.batch_size=16"])
    check_completed(record)
    assert record["config"]["scheme"]["learn_h"] is True


def test_cli_run_then_rerun_is_skipped(tmp_path):
    first = cli("scheme=rk4", "depth=10", tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    (name, record), = results_under(tmp_path).items()
    assert name.startswith("digits-horesnet-rk4-d10-s0-") and record["status"] == "completed"
    again = cli("scheme=rk4", "depth=10", tmp_path=tmp_path, module=True)  # also `python -m odenets.train`
    assert again.returncode == 0 and "already completed, skipping" in again.stdout + again.stderr
    assert results_under(tmp_path)[name]["finished"] == record["finished"]


def test_multirun_keeps_going_past_a_failed_job(tmp_path):
    # depth=6 is valid for Euler (2 + 2 x 2) and midpoint (2 + 4) but not for RK4 (2 + 8n).
    out = cli("-m", "scheme=euler,rk4,midpoint", "depth=6", tmp_path=tmp_path)
    assert out.returncode == 1, out.stderr[-2000:]  # exit status = number of failed jobs
    statuses = sorted(r["status"] for r in results_under(tmp_path).values())
    assert statuses == ["completed", "completed", "failed"]
    assert "sweep: 2 completed, 1 failed" in out.stderr and "nearest valid depths: 10" in out.stderr


def test_alpha_sweep(tmp_path):
    out = cli("-m", "scheme=heun_ext", "alpha=0.5,1.0", "model.stage_weights=shared", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    alphas = sorted(r["config"]["scheme"]["alpha"] for r in results_under(tmp_path).values())
    assert alphas == [0.5, 1.0]


def test_ddp_on_two_cpu_processes_writes_one_run_directory(tmp_path):
    out = cli("trainer=ddp_cpu", "trainer.devices=2", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    records = results_under(tmp_path)
    assert len(records) == 1
    (record,) = records.values()
    check_completed(record)
    assert record["config"]["trainer"]["devices"] == 2
    # 64 training images, batch 32 per rank on 2 ranks: one optimiser step per epoch
    assert record["history"][0]["step"] == 1


def test_wandb_offline(tmp_path):
    out = cli("logger=wandb", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    (name, record), = results_under(tmp_path).items()
    run_dir = tmp_path / "outputs" / "runs" / name
    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and offline[0].name.endswith(record["fingerprint"][:16])
    assert (run_dir / "csv" / "version_0" / "metrics.csv").is_file()


def test_bad_depth_is_one_line_and_exit_2(tmp_path):
    out = cli("scheme=rk4", "depth=30", tmp_path=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == ("error: depth=30 is not valid for scheme=rk4 (8 layers per block, "
                                                   "depth = 2 + 8 x blocks); nearest valid depths: 26 or 34")
    assert "Traceback" not in out.stderr


def test_wandb_online_without_network_falls_back_to_offline(tmp_path):
    """No network here: asked to sync live, the run warns in one line, logs offline, and finishes."""
    import time

    start = time.time()
    out = cli("logger=wandb", "logger.wandb.offline=false", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert time.time() - start < 60
    assert "unreachable" in out.stdout + out.stderr and "logging offline instead" in out.stdout + out.stderr
    (name, _), = results_under(tmp_path).items()
    assert list((tmp_path / "outputs" / "runs" / name / "wandb").glob("offline-run-*"))
