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
    if record["config"]["dataset"].get("val_fraction") is None:  # the papers' protocol: no validation split
        assert not [k for e in record["history"] for k in e if k.startswith("val/")]
        assert "at_val_best" not in record["metrics"] and "val_samples" not in record["data"]


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


def _best_checkpoint(run_dir) -> tuple[int, dict]:
    import torch

    ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    (state,) = [v for k, v in ckpt["callbacks"].items() if k.startswith("ModelCheckpoint")]
    return ckpt["global_step"], state


def test_a_validation_split_selects_best_ckpt_and_reports_the_test_values_there(run_inprocess):
    record, run_dir = run_inprocess(["dataset.subset=200", "dataset.val_fraction=0.1", "epochs=4",
                                     "optimizer.lr=0.3", "scheduler.gamma=1.0"])
    check_completed(record, epochs=4)
    history = record["history"]
    assert all({"val/loss", "val/acc", "val/f1_macro", "test/acc"} <= set(e) for e in history)
    assert not [k for e in history for k in e if "dataloader_idx" in k]  # plain names from the two dataloaders
    assert record["data"]["train_samples"] == 180 and record["data"]["val_samples"] == 20
    val_acc = [e["val/acc"] for e in history]
    chosen = val_acc.index(max(val_acc))  # the best validation epoch, ties to the earliest
    at = record["metrics"]["at_val_best"]
    assert at["monitor"] == "val/acc" and at["epoch"] == history[chosen]["epoch"] == chosen + 1
    assert at["test/acc"] == history[chosen]["test/acc"] and at["val/acc"] == record["metrics"]["best"]["val/acc"]
    step, state = _best_checkpoint(run_dir)
    assert state["monitor"] == "val/acc" and step == at["step"] == history[chosen]["step"]
    from odenets.evaluate import evaluate

    tested = evaluate(run_dir)["metrics"]  # best.ckpt on the test split: the test values at that epoch
    assert tested["test/acc"] == pytest.approx(at["test/acc"]) and tested["test/loss"] == pytest.approx(at["test/loss"])


def test_the_validation_best_epoch_is_the_earliest_of_equal_values():
    from odenets.results import at_val_best

    history = [{"epoch": 1, "val/acc": 0.5, "test/acc": 0.7}, {"epoch": 2, "val/acc": 0.8, "test/acc": 0.6},
               {"epoch": 3, "val/acc": 0.8, "test/acc": 0.9}, {"epoch": 4, "val/loss": 0.1}]
    assert at_val_best(history, "val/acc", {"val/acc": True}) == {"monitor": "val/acc", **history[1]}
    assert at_val_best(history, "val/loss", {})["epoch"] == 4 and at_val_best(history, "val/f1", {}) is None


def test_a_validation_split_on_the_sine_validates_the_one_step_loss(run_inprocess):
    record, run_dir = run_inprocess(["experiment=heunnet/sine", "model=lstm", "model.hidden_size=8", "epochs=3",
                                     "dataset.val_fraction=0.2", "dataset.subset=null", "dataset.test_subset=null",
                                     "dataset.batch_size=16"])
    assert record["status"] == "completed", record.get("error")
    assert all({"val/loss", "test/loss", "test/gen_acc"} <= set(e) for e in record["history"])
    assert not [k for e in record["history"] for k in e if k.startswith("val/gen")]  # the free run is a test metric
    losses = [e["val/loss"] for e in record["history"]]
    at = record["metrics"]["at_val_best"]
    assert at["monitor"] == "val/loss" and at["epoch"] == losses.index(min(losses)) + 1 and "test/gen_acc" in at
    assert _best_checkpoint(run_dir)[1]["monitor"] == "val/loss"
    assert (record["data"]["train_samples"], record["data"]["val_samples"]) == (161, 41)


def test_without_a_validation_split_a_run_logs_what_the_committed_records_logged(run_inprocess):
    """Nothing new per epoch: the keys of a committed record's history, metrics and data (and the sine's numbers
    of its first epoch) are those of a run of today's code with the same overrides."""
    from odenets.results import REPRODUCED

    committed = json.loads((REPRODUCED / "cpu" / "sine-lstm-s0-cpu-d79751f3.json").read_text())
    record, run_dir = run_inprocess([*committed["overrides"], "epochs=1", "dataset.subset=null",
                                     "dataset.test_subset=null", "dataset.batch_size=16"])
    assert record["status"] == "completed", record.get("error")
    assert [list(e) for e in record["history"]] == [list(e) for e in committed["history"][:1]]
    assert set(record["metrics"]) == set(committed["metrics"]) and record["data"] == committed["data"]
    for key in ("train/loss", "test/loss", "test/gen_mse"):  # bit for bit on the machine that made it
        assert record["history"][0][key] == pytest.approx(committed["history"][0][key], rel=1e-5)
    assert _best_checkpoint(run_dir)[1]["monitor"] == "test/gen_mse"


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
