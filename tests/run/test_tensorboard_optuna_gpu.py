"""What researchers expect beside training (issue 21, docs/tensorboard_optuna_gpu.md): TensorBoard, Optuna
searches (`hparams_search=`), `make gpu-check`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import REPO, cli, results_under
from odenets.config import compose, defining_config

sys.path.insert(0, str(REPO / "scripts"))
import gpu_check  # noqa: E402


@pytest.mark.slow
def test_tensorboard_logs_test_acc_one_version_per_resume(tmp_path):
    out = cli("logger=tensorboard", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    (name, record), = results_under(tmp_path).items()
    run_dir = tmp_path / "outputs" / "runs" / name
    events = EventAccumulator(str(run_dir / "tensorboard" / "version_0"))
    events.Reload()
    logged = [e.value for e in events.Scalars("test/acc")]
    assert len(logged) == record["epochs"]
    assert max(logged) == pytest.approx(record["metrics"]["best"]["test/acc"], rel=1e-6)
    assert (run_dir / "csv" / "version_0" / "metrics.csv").is_file()

    (run_dir / "result.json").unlink()  # as if stopped after its last checkpoint: the rerun resumes
    out = cli("logger=tensorboard", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert results_under(tmp_path)[name]["resumed_from_step"] > 0
    assert list((run_dir / "tensorboard" / "version_1").glob("events.out.tfevents.*"))


def _search(name: str, *args: str, tmp_path) -> tuple:
    """A three-trial search on the digits (200 training images: 20 held out for validation): its sweep directory
    and the trials' records."""
    out = cli("-m", f"hparams_search={name}", "dataset=digits", "hydra.sweeper.n_trials=3", "dataset.subset=200",
              *args, tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    (sweep,) = (tmp_path / "outputs" / "searches").iterdir()
    records = [json.loads(p.read_text()) for p in sweep.glob("*/result.json")]
    assert len(records) == 3 and {r["status"] for r in records} == {"completed"}
    assert {r["data"]["val_samples"] for r in records} == {20} and {r["data"]["sha256"] for r in records} == {
        records[0]["data"]["sha256"]}  # every trial validates on the same held-out images
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == max(r["metrics"]["best"]["val/acc"] for r in records)  # chosen on validation
    return sweep, records, best


@pytest.mark.slow
def test_optuna_searches_learning_rate_and_weight_decay(tmp_path):
    sweep, records, best = _search("lr_wd", tmp_path=tmp_path)
    assert sweep.name == "lr_wd-digits-horesnet"
    assert len({r["config"]["optimizer"]["lr"] for r in records}) == 3
    assert set(best["best_params"]) == {"optimizer.lr", "optimizer.weight_decay"}


@pytest.mark.slow
def test_optuna_searches_the_extended_heun_alpha(tmp_path):
    _, records, best = _search("heun_alpha", "scheme=heun_ext", tmp_path=tmp_path)
    alphas = [r["config"]["scheme"]["alpha"] for r in records]
    assert len(set(alphas)) == 3 and all(0 <= a <= 1 for a in alphas)
    assert {r["config"]["scheme"]["name"] for r in records} == {"heun_ext"}
    assert set(best["best_params"]) == {"alpha", "optimizer.lr"}


def test_a_search_config_adds_only_its_objective_and_validation_split_and_heun_alpha_picks_its_scheme():
    search, plain = defining_config(compose(["hparams_search=lr_wd"])), defining_config(compose([]))
    assert search.pop("optimized_metric") == "val/acc" and search["dataset"].pop("val_fraction") == 0.1
    assert search == plain
    cfg = compose(["experiment=heunnet/mnist", "hparams_search=heun_alpha"])
    assert cfg.scheme.name == "heun_ext" and cfg.model.name == "ode_rnn" and cfg.optimized_metric == "val/acc"
    assert cfg.dataset.val_fraction == 0.1


def test_an_objective_the_run_lacks_is_refused_naming_the_validation_split():
    from odenets.errors import ConfigError
    from odenets.train import _objective

    record = {"status": "completed", "metrics": {"best": {"test/acc": 0.9, "val/acc": 0.8}}}
    assert _objective("val/acc", record) == 0.8
    with pytest.raises(ConfigError, match=r"optimized_metric='val/acc' is not a metric of this run \(val/ metrics "
                                          r"need a validation split: dataset.val_fraction\); its metrics: test/acc"):
        _objective("val/acc", {"status": "completed", "metrics": {"best": {"test/acc": 0.9}}})


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a CUDA machine gpu-check runs for real")
def test_gpu_check_without_cuda_is_one_line_and_exit_0():
    # -o: the venv stamp is taken as up to date (no reinstall); PY: this interpreter
    out = subprocess.run(["make", "-s", "-o", ".venv/.installed", f"PY={sys.executable}", "gpu-check"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout == "no CUDA device: gpu-check needs one; nothing run\n"


def test_gpu_check_runs_the_gpu_tests_the_quick_bench_and_two_bf16_trainings():
    steps = {s.name: s for s in gpu_check.steps(python="python")}
    assert list(steps) == ["gpu_tests", "bench", "horesnet", "heunnet"]
    assert sum(s.timeout_s for s in steps.values()) < 600
    assert steps["gpu_tests"].command == ["python", "-m", "pytest", "tests/run/test_gpu.py"]
    assert (REPO / "tests" / "run" / "test_gpu.py").is_file()
    bench = steps["bench"].command
    assert bench[:5] == ["python", "scripts/bench.py", "--device", "cuda", "--quick"]
    help_text = subprocess.run([sys.executable, "scripts/bench.py", "--help"], cwd=REPO, capture_output=True,
                               text=True, timeout=120).stdout
    assert all(flag in help_text for flag in ("--device", "--quick", "--out"))
    for name, model in (("horesnet", "horesnet"), ("heunnet", "ode_rnn")):
        assert steps[name].command[:2] == ["python", "train.py"]
        cfg = compose(steps[name].command[2:])  # every override names a real key
        assert (cfg.trainer.accelerator, cfg.precision, cfg.epochs, cfg.model.name) == ("gpu", "bf16-mixed", 2, model)
    assert compose(steps["heunnet"].command[2:]).dataset.name == "mnist"


def test_gpu_check_summary_numbers():
    assert gpu_check.pytest_counts("..s\n= warnings =\n2 passed, 1 skipped in 40.10s\n") == {"passed": 2, "skipped": 1}
    bench = {"meta": {"quick": True}, "overhead": {"ratio": 1.01, "target": 1.05},
             "scaling": {"r2": 0.999, "step_s": [0.1]},
             "schemes": {"rows": [{"depth": 58, "scheme": "rk4", "time_ratio": 1.02, "memory_ratio": 1.1},
                                  {"depth": 30, "scheme": "rk4", "skipped": "no depth 30"}]}}
    assert gpu_check.bench_numbers(bench) == {"overhead ratio": 1.01, "scaling r2": 0.999,
                                              "schemes rk4 58 time_ratio": 1.02, "schemes rk4 58 memory_ratio": 1.1}
