"""What the README promises on GPUs (bf16, DDP across GPUs, determinism), run where GPUs exist; on a CPU
machine each test is skipped with the reason."""

from __future__ import annotations

from helpers import cli, results_under, run_if


@run_if(min_gpus=1)
def test_bf16_training_step_on_a_gpu(tmp_path):
    out = cli("trainer=gpu", "precision=bf16-mixed", "scheme=rk4", "depth=10", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    (record,) = results_under(tmp_path).values()
    assert record["status"] == "completed" and record["device"]["gpus"]


@run_if(min_gpus=2)
def test_ddp_on_two_gpus_writes_one_run(tmp_path):
    out = cli("trainer=ddp", "trainer.devices=2", "scheme=midpoint", "depth=6", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    (record,) = results_under(tmp_path).values()
    assert record["config"]["trainer"]["sync_batchnorm"] is True and len(record["device"]["gpus"]) >= 2


@run_if(min_gpus=1)
def test_deterministic_gpu_runs_repeat(tmp_path):
    metrics = []
    for name in ("a", "b"):
        out = cli("trainer=gpu", "trainer.deterministic=true", "force=true", "scheme=rk4", "depth=10",
                  tmp_path=tmp_path / name)
        assert out.returncode == 0, out.stderr[-2000:]
        (record,) = results_under(tmp_path / name).values()
        metrics.append(record["metrics"]["final"])
    assert metrics[0] == metrics[1]
