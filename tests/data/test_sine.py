"""The sine-wave task: windows and split, the free run and its metrics, ForecastTask's logs and saved
waves, and `train.py experiment=heunnet/sine` end to end (one run, and the alpha sweep)."""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn

from helpers import results_under
from helpers.recurrent import train_cli
from odenets.config import compose
from odenets.data import build_datamodule
from odenets.data.sine import SineDataModule
from odenets.errors import ConfigError
from odenets.tasks.forecast import ForecastTask, free_run_scores, generate


def test_windows_and_split():
    dm = SineDataModule(dt=0.1, window=50, train_fraction=0.5)
    dm.setup()
    assert dm.n_samples == 503 and dm.n_train == 252  # 16 pi / 0.1 = 502.65: samples 0..502
    assert dm.train.x.shape == (252 - 50, 50) and dm.train.y.shape == (202,)
    assert dm.test.x.shape == (503 - 252, 50) and dm.train.x.dtype == torch.float32
    t = torch.arange(503, dtype=torch.float64) * 0.1
    torch.testing.assert_close(dm.train.x[3], torch.sin(t[3:53]).float())
    torch.testing.assert_close(dm.train.y[3], torch.sin(t[53]).float())
    torch.testing.assert_close(dm.test.y[0], torch.sin(t[252]).float())  # first test target: first test sample
    assert torch.equal(dm.test.x[0], torch.sin(t[202:252]).float())


def test_free_run_seed_and_target():
    dm = SineDataModule(dt=0.2, window=10, horizon=300)
    kw = dm.task_kwargs()
    assert kw["seed_window"].shape == (10,) and kw["target"].shape == (300,) and kw["times"].shape == (310,)
    first = (dm.n_train - 10) * 0.2
    torch.testing.assert_close(kw["times"][[0, -1]], torch.tensor([first, first + 309 * 0.2]).float())
    torch.testing.assert_close(kw["target"], torch.sin(kw["times"][10:].double()).float())  # continues past 16 pi
    assert kw["tolerance"] == 0.1
    assert SineDataModule(dt=0.2, window=10).task_kwargs()["target"].shape == (dm.n_samples - dm.n_train,)


@pytest.mark.parametrize("kwargs,match", [
    ({"window": 300}, "dataset.window=300"), ({"dt": 0}, "dataset.dt=0"), ({"train_fraction": 1.0}, "train_fraction"),
    ({"tolerance": 0}, "tolerance"), ({"horizon": 0}, "horizon"),
])
def test_bad_settings_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):  # ranges: the data module's ALLOWED, checked as it is built
        build_datamodule({"name": "sine", **kwargs})


class ExactRecurrence(nn.Module):
    """sin(t + dt) = 2 cos(dt) sin(t) - sin(t - dt): a perfect next-value model."""

    def __init__(self, dt: float) -> None:
        super().__init__()
        self.c = 2 * math.cos(dt)

    def forward(self, x):
        return (self.c * x[:, -1] - x[:, -2])[:, None]


def test_generate_runs_free_from_the_seed():
    dm = SineDataModule(dt=0.1, window=5)
    kw = dm.task_kwargs()
    generated = generate(ExactRecurrence(0.1), kw["seed_window"].double(), len(kw["target"]))
    torch.testing.assert_close(generated.float(), kw["target"], atol=1e-5, rtol=0)
    zeros = generate(lambda x: torch.zeros(1, 1), kw["seed_window"], 7)
    assert torch.equal(zeros, torch.zeros(7))


def test_forecast_task_logs_metrics_and_saves_waves(tmp_path):
    dm = SineDataModule(dt=0.1, window=5, horizon=40, tolerance=0.1)
    task = ForecastTask(ExactRecurrence(0.1), **dm.task_kwargs())
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    metrics, = trainer.validate(task, datamodule=dm, verbose=False)
    assert metrics["test/gen_acc"] == 1.0 and metrics["test/gen_mse"] < 1e-10 and metrics["test/loss"] < 1e-10
    saved = np.load(tmp_path / "generated" / "epoch_001.npz")
    assert set(saved.files) == {"times", "seed", "target", "generated"}
    assert saved["seed"].shape == (5,) and saved["generated"].shape == saved["target"].shape == (40,)


def test_gen_acc_is_the_fraction_within_tolerance():
    scores = free_run_scores(torch.tensor([0.0, 0.05, 0.5]), torch.tensor([0.0, 0.2, 0.45]), tolerance=0.1)
    assert float(scores["test/gen_acc"]) == pytest.approx(2 / 3)
    assert float(scores["test/gen_mse"]) == pytest.approx((0.15**2 + 0.05**2) / 3)
    target = SineDataModule(dt=0.1, window=5).task_kwargs()["target"]
    zeros = free_run_scores(torch.zeros_like(target), target, tolerance=0.1)  # right only where |sin t| <= 0.1
    assert float(zeros["test/gen_acc"]) == pytest.approx(float((target.abs() <= 0.1).float().mean()))


def test_sine_config_builds_the_forecast_task():
    cfg = compose(["experiment=heunnet/sine"])
    dm = build_datamodule(cfg.dataset)
    assert dm.task == "forecast" and cfg.model.cell == "lstm" and cfg.model.num_outputs == 1
    assert cfg.epochs == 100 and cfg.scheduler is None


@pytest.mark.slow
def test_heunnet_sine_experiment_runs_and_saves_generated_waves(tmp_path):
    out = train_cli("experiment=heunnet/sine", "model=phased_lstm", "dataset.horizon=20", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    (name, record), = results_under(tmp_path).items()
    assert record["status"] == "completed" and name.startswith("sine-phased_lstm-")
    assert {"train/loss", "test/loss", "test/gen_mse", "test/gen_acc"} <= set(record["history"][0])
    waves = np.load(tmp_path / "outputs" / "runs" / name / "generated" / "epoch_001.npz")
    assert waves["generated"].shape == (20,)


@pytest.mark.slow
def test_alpha_sweep_runs_one_job_per_alpha(tmp_path):
    out = train_cli("-m", "experiment=heunnet/sine", "scheme=heun_ext", "alpha=0.75,1.0", "dataset.horizon=5",
                    tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    records = results_under(tmp_path)
    assert sorted(r["config"]["model"]["scheme"]["alpha"] for r in records.values()) == [0.75, 1.0]
    assert all(r["status"] == "completed" for r in records.values())
    assert {n.split("-s0-")[0] for n in records} == {"sine-ode_rnn-heun_ext-a0.75", "sine-ode_rnn-heun_ext-a1"}
