"""Sweeps through a real SLURM scheduler with `hydra/launcher=slurm` (conf/hydra/launcher/slurm.yaml and
`hydra_plugins.odenets_launchers.slurm`): three seeds as a job array, a 2-rank DDP job, a job requeued while it
trains (by `scontrol requeue` and by the time-limit signal), jobs cancelled while they train or wait.

`make test-slurm` brings up a one-node cluster (scripts/local_slurm.sh, which installs SLURM if absent), runs
these and brings it down; without a cluster that answers they skip with the reason (`make test` never starts
one). Each takes 15-65 s on an idle 2-core machine (docs/cluster.md). The first test, how the launcher learns
job states without SLURM's accounting, needs no cluster.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import REPO, quick_overrides, results_under
from hydra_plugins.odenets_launchers.slurm import SqueueFallbackWatcher

slurm = pytest.mark.slurm

# small jobs: one CPU, 1 GB, 5 minutes (the time-limit signal, 120 s before it, never comes)
LAUNCHER = ["hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=5"]


def _long(epochs: int) -> list[str]:
    """All 1437 training digits in batches of 32 at width 32: 45 steps per epoch, about 1 s on one idle core, and
    last.ckpt every 10 steps, so a job is signalled well before it ends."""
    return ["dataset.subset=null", "model.width=32", f"epochs={epochs}", "checkpoint_every_n_steps=10",
            "trainer.deterministic=true"]


def test_job_states_come_from_squeue_where_sacct_has_no_accounting(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sacct").write_text("#!/bin/sh\necho 'sacct: error: Slurm accounting storage is disabled' >&2\nexit 1\n")
    # 12_2 was cancelled while pending (squeue no longer lists it); 12_3 and 12_4 are still pending
    (bin_dir / "squeue").write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/args\n"
                                    "printf '12_0|COMPLETED|vm\\n12_1|RUNNING|vm\\n12_[3-4]|PENDING|\\n'\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(SqueueFallbackWatcher, "sacct", True)
    watcher = SqueueFallbackWatcher(delay_s=60)
    jobs = ["12_0", "12_1", "12_2", "12_3", "12_4"]
    for job in jobs:
        watcher.register_job(job)
    watcher.update()
    assert {j: watcher.get_state(j, mode="cache") for j in jobs} == {
        "12_0": "COMPLETED", "12_1": "RUNNING", "12_2": "GONE", "12_3": "PENDING", "12_4": "PENDING"}
    assert [watcher.is_done(j, mode="cache") for j in jobs] == [True, False, True, False, False]
    assert SqueueFallbackWatcher.sacct is False  # not asked again
    assert "--states=all" in (tmp_path / "args").read_text() and "--jobs=12" in (tmp_path / "args").read_text()
    # squeue forgets finished jobs after MinJobAge: a job id it no longer knows has ended
    (bin_dir / "squeue").write_text("#!/bin/sh\necho 'slurm_load_jobs error: Invalid job id specified' >&2\nexit 1\n")
    watcher.update()
    assert watcher.get_state("12_1", mode="cache") == "GONE" and watcher.get_state("12_3", mode="cache") == "GONE"


def _unavailable(env: dict) -> str | None:
    """Why no SLURM cluster can take jobs here, or None."""
    if not (shutil.which("sinfo") and shutil.which("sbatch") and shutil.which("scontrol")):
        return "SLURM not installed: `make test-slurm` installs and runs these"
    if not env.get("SLURM_CONF") and not Path("/etc/slurm/slurm.conf").is_file():
        return "no SLURM cluster configured (no SLURM_CONF, no /etc/slurm/slurm.conf): `make test-slurm` runs these"
    try:
        out = subprocess.run(["sinfo", "--noheader", "--partition=debug", "--format=%T"], env=env,
                             capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "no SLURM controller answers (sinfo timed out): `make test-slurm` brings a cluster up"
    if out.returncode:
        why = (out.stderr.strip().splitlines() or ["sinfo failed"])[-1]
        return f"no SLURM cluster is up ({why}): `make test-slurm` brings one up"
    if not set(out.stdout.split()) & {"idle", "mixed", "allocated"}:
        return f"SLURM partition debug has no node taking jobs ({out.stdout.split()}): see scripts/local_slurm.sh"
    return None


@pytest.fixture(scope="module")
def slurm_env() -> dict:
    """The environment the sweeps run in; skips the module when no cluster answers. The cluster is the one
    SLURM_CONF names (`scripts/local_slurm.sh up` prints it; `make test-slurm` sets it), else the system's."""
    # one thread per job, its one CPU (cpus_per_task=1): where tasks are not bound to their CPUs (TaskPlugin=task/none,
    # scripts/local_slurm.sh) torch would start one per core, and two jobs with a busy machine run 10x slower
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    reason = _unavailable(env)
    if reason and os.environ.get("ODENETS_REQUIRE_SLURM") == "1":  # `make test-slurm` must not pass by skipping
        pytest.fail(reason)
    if reason:
        pytest.skip(reason)
    return env


class Sweep:
    """`python train.py -m <overrides>` in the background, its output in files; cancels its jobs when done."""

    def __init__(self, tmp_path: Path, env: dict, *overrides: str) -> None:
        self.tmp_path, self.env = tmp_path, env
        self.out, self.err = tmp_path / "sweep.out", tmp_path / "sweep.err"
        self.submitit = tmp_path / "outputs" / "runs" / ".submitit"
        command = [sys.executable, "train.py", "-m", *quick_overrides(tmp_path), *LAUNCHER, *overrides]
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=err)

    def job_ids(self) -> list[str]:
        """SLURM ids of the sweep's jobs (`123` for one job, `123_0`, `123_1` for an array), from submitit's folders."""
        names = [p.name for p in self.submitit.glob("*") if re.fullmatch(r"\d+(_\d+)?", p.name)]
        tasks = [n for n in names if "_" in n]  # an array also has a folder for its submission script
        return sorted(tasks or names, key=lambda n: [int(x) for x in n.split("_")])

    def wait_for(self, what: str, condition, timeout: float) -> None:
        deadline = time.time() + timeout
        while not condition():
            if self.proc.poll() is not None:
                pytest.fail(f"the sweep ended (status {self.proc.returncode}) before {what}:\n{self.output()}")
            if time.time() > deadline:
                pytest.fail(f"no {what} after {timeout:.0f} s:\n{self.output()}")
            time.sleep(0.5)

    def finish(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the sweep did not end within {timeout:.0f} s (hung?):\n{self.output()}")

    def output(self) -> str:
        return f"--- stdout\n{self.out.read_text()[-4000:]}\n--- stderr\n{self.err.read_text()[-4000:]}"

    def job_log(self, job: str) -> str:
        return "\n".join(p.read_text()[-3000:] for p in sorted((self.submitit / job).glob("*_log.*")))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        ids = {j.split("_")[0] for j in self.job_ids()}
        if ids:  # nothing of this test stays queued or running
            subprocess.run(["scancel", *sorted(ids)], env=self.env, capture_output=True, timeout=30)


@pytest.fixture
def sweep(tmp_path, slurm_env):
    started: list[Sweep] = []

    def start(*overrides: str) -> Sweep:
        started.append(Sweep(tmp_path, slurm_env, *overrides))
        return started[-1]

    yield start
    for s in started:
        s.close()


def _run_dir(tmp_path: Path, seed: int) -> Path | None:
    found = list((tmp_path / "outputs" / "runs").glob(f"*-s{seed}-*"))
    return found[0] if found else None


def _checkpointed(tmp_path: Path, seed: int):
    return lambda: (d := _run_dir(tmp_path, seed)) is not None and (d / "checkpoints" / "last.ckpt").is_file()


def _scontrol_job(job: str, env: dict) -> dict[str, str]:
    out = subprocess.run(["scontrol", "--oneliner", "show", "job", job], env=env, capture_output=True, text=True,
                         timeout=30).stdout
    return dict(field.split("=", 1) for field in out.split() if "=" in field)


@pytest.mark.slow
@slurm
def test_three_seeds_run_as_a_job_array_on_cpu(sweep, tmp_path):
    t0 = time.time()
    s = sweep("dataset=digits", "trainer.max_epochs=1", "seed=0,1,2")
    status = s.finish(timeout=170)
    assert status == 0, s.output()
    records = results_under(tmp_path)
    assert sorted(r["config"]["seed"] for r in records.values()) == [0, 1, 2], s.output()
    assert {r["status"] for r in records.values()} == {"completed"}, s.output()
    # one array of three SLURM jobs, each with its result, asking for what a CPU run needs and no GPU
    jobs = s.job_ids()
    assert len(jobs) == 3 and len({j.split("_")[0] for j in jobs}) == 1, jobs
    assert all(list((s.submitit / j).glob("*_result.pkl")) for j in jobs), s.output()
    script = next(s.submitit.rglob("*_submission.sh")).read_text()
    for flag in ("--partition=debug", "--cpus-per-task=1", "--mem=1GB", "--ntasks-per-node=1", "--nodes=1",
                 "--time=5", "--signal=USR2@120", "--requeue", "--array=0-2"):
        assert f"#SBATCH {flag}" in script, (flag, script)
    assert "--gpus-per-node" not in script, script
    assert "sweep: 3 completed" in s.err.read_text(), s.output()
    print(f"3-job array through SLURM: {time.time() - t0:.0f} s")


@pytest.mark.slow
@slurm
def test_a_ddp_job_runs_one_slurm_task_per_rank(sweep, tmp_path):
    t0 = time.time()
    s = sweep("trainer=ddp_cpu", "trainer.devices=2", "seed=0")
    status = s.finish(timeout=170)
    assert status == 0, s.output()
    (record,) = results_under(tmp_path).values()
    (job,) = s.job_ids()
    assert record["status"] == "completed" and record["config"]["trainer"]["devices"] == 2, s.job_log(job)
    script = next(s.submitit.rglob("*_submission.sh")).read_text()
    assert "#SBATCH --ntasks-per-node=2" in script and "--gpus-per-node" not in script, script
    # two SLURM tasks, each a DDP rank of the same run (Lightning reads the ranks from SLURM)
    assert len(list((s.submitit / job).glob("*_result.pkl"))) == 2, s.job_log(job)
    assert "MEMBER: 2/2" in s.job_log(job), s.job_log(job)
    print(f"2-rank DDP job through SLURM: {time.time() - t0:.0f} s")


# how a running job is sent back to the queue: by the scheduler or an admin (SLURM sends SIGTERM and requeues
# it), or by the time-limit signal submitit asks for (--signal=USR2@signal_delay_s; the job requeues itself)
REQUEUE = {"scontrol requeue": ["scontrol", "requeue"], "time-limit signal": ["scancel", "--signal=USR2"]}


@pytest.mark.slow
@slurm
@pytest.mark.parametrize("how", list(REQUEUE))
def test_a_requeued_job_comes_back_and_resumes_from_its_checkpoint(sweep, tmp_path, slurm_env, how):
    t0 = time.time()
    s = sweep("seed=7", *_long(20))
    s.wait_for("checkpoints/last.ckpt", _checkpointed(tmp_path, 7), timeout=90)
    (job,) = s.job_ids()
    assert _scontrol_job(job, slurm_env)["JobState"] == "RUNNING"
    sent = subprocess.run([*REQUEUE[how], job], env=slurm_env, capture_output=True, text=True, timeout=30)
    assert sent.returncode == 0, sent.stderr
    t_requeue = time.time() - t0
    # SLURM holds a requeued job for 120 s (Reason=BeginTime); let it start in 5 s (in the second its old run is
    # killed in, slurmd refuses to start it again: "Job credential revoked", and the job ends FAILED)
    s.wait_for("the requeued job pending", lambda: _scontrol_job(job, slurm_env).get("Reason") == "BeginTime", 60)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now+5"], env=slurm_env, check=True, timeout=30)
    status = s.finish(timeout=170 - t_requeue)
    (record,) = results_under(tmp_path).values()
    assert status == 0 and record["status"] == "completed", f"{s.output()}\n--- job log\n{s.job_log(job)}"
    assert _scontrol_job(job, slurm_env)["Restarts"] == "1"  # it ran twice: the same SLURM job, requeued
    steps = record["history"][-1]["step"]
    assert 0 < record["resumed_from_step"] < steps, (record["resumed_from_step"], steps)
    print(f"{how} after {t_requeue:.0f} s at step >= {record['resumed_from_step']}; "
          f"completed after {time.time() - t0:.0f} s")


@pytest.mark.slow
@slurm
def test_cancelled_jobs_are_reported_and_the_other_completes(sweep, tmp_path, slurm_env):
    """Seeds 0 and 1 start on the node's two CPUs; seed 2 waits. Seed 2 is cancelled while pending (it never ran,
    so the launcher records it), seed 1 while it trains (the run records how it stopped, or the launcher does)."""
    t0 = time.time()
    s = sweep("seed=0,1,2", "hydra.launcher.gpus_per_node=0", *_long(10))
    s.wait_for("the job array", lambda: len(s.job_ids()) == 3, timeout=30)
    pending = s.job_ids()[2]
    s.wait_for("seed 2 pending", lambda: _scontrol_job(pending, slurm_env).get("JobState") == "PENDING", 30)
    subprocess.run(["scancel", pending], env=slurm_env, check=True, timeout=30)
    s.wait_for("seed 1 training", _checkpointed(tmp_path, 1), timeout=90)
    running = s.job_ids()[1]
    assert _scontrol_job(running, slurm_env)["JobState"] == "RUNNING"
    subprocess.run(["scancel", running], env=slurm_env, check=True, timeout=30)
    t_cancel = time.time() - t0
    status = s.finish(timeout=170 - t_cancel)
    assert status == 2, s.output()  # the sweep's exit status counts the jobs that did not finish
    records = {int(re.search(r"-s(\d+)-", name).group(1)): r for name, r in results_under(tmp_path).items()}
    assert records[0]["status"] == "completed", s.output()
    assert records[1]["status"] in ("failed", "preempted"), s.output()
    # squeue forgets an array task cancelled while pending at once, sacct calls it CANCELLED
    assert records[2]["status"] == "failed" and f"SLURM job {pending} ended " in records[2]["error"], records[2]
    summary = s.err.read_text()
    assert "sweep: 1 completed" in summary and "Traceback" not in summary, s.output()
    for seed in (1, 2):
        name = _run_dir(tmp_path, seed).name
        assert re.search(rf"^  (failed|preempted): {re.escape(name)}: ", summary, re.M), (name, s.output())
    print(f"cancelled after {t_cancel:.0f} s; sweep ended after {time.time() - t0:.0f} s")
