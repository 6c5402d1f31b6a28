"""The SLURM launcher (`hydra/launcher=slurm`): hydra-submitit-launcher's, made to report instead of hang or die.

Why not the plugin's own `SlurmLauncher` as is (hydra-submitit-launcher 1.2, submitit 1.5):

- It waits for every job with `job.results()`, which raises `UncompletedJobError` for a job that ended without
  a result (`scancel`, node failure, out of memory, time limit with no requeue): the sweep died with a traceback
  and no sweep summary. Here such a job is one log line, and its run's `result.json`, unless the run wrote one
  itself in this sweep (e.g. `preempted`), records `failed` with the SLURM state, so the sweep summary
  (`odenets.run.lifecycle.SweepReport`) names it and the exit status counts it. Hydra still gets a completed
  `JobReturn`, as for any job of ours (a failed job's record says how it failed; `odenets.train`).
- submitit learns that a job ended from `sacct`. On a cluster without accounting storage (no slurmdbd, as in
  `scripts/local_slurm.sh`) sacct fails, submitit warns on every poll, and a job that ended without a result
  is waited for forever. Job states then come from `squeue --states=all` (logged once).
- `gpus_per_node: ${trainer.devices}` asks a CPU run (`trainer=cpu`, `ddp_cpu`) for GPUs a CPU node does not
  have: a run whose accelerator is `cpu` asks for none.

Hydra instantiates a launcher only from the `hydra_plugins` package, hence this module's place. The job side (running a
sweep point, submitit's requeue on its signal) is the plugin's, unchanged. Tested through a real scheduler in
tests/run/test_slurm.py (`make test-slurm`).
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra.errors import HydraException
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from submitit.core.utils import FailedJobError, UncompletedJobError
from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob

from odenets import results

log = logging.getLogger("odenets")


class SlurmLauncher(submitit_launcher.SlurmLauncher):
    """`hydra.launcher._target_` of conf/hydra/launcher/slurm.yaml: one SLURM job per sweep point (a job array)."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        if not isinstance(SlurmJob.watcher, SqueueFallbackWatcher):  # class attribute: every SlurmJob polls through it
            SlurmJob.watcher = SqueueFallbackWatcher(delay_s=SlurmJob.watcher._delay_s)
        params = dict(self.params)
        if OmegaConf.select(self.config, "trainer.accelerator") == "cpu" and params.get("gpus_per_node"):
            log.info("a CPU run: no GPUs requested (gpus_per_node=%s left out)", params["gpus_per_node"])
            params["gpus_per_node"] = None
        executor = submitit.AutoExecutor(cluster="slurm", folder=params.pop("submitit_folder"),
                                         slurm_max_num_timeout=params.pop("max_num_timeout"))
        common = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in common else f"slurm_{k}": v for k, v in params.items()})
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        log.info("submitit 'slurm' sweep output dir: %s", sweep_dir)
        indices = range(initial_job_idx, initial_job_idx + len(job_overrides))
        for idx, overrides in zip(indices, job_overrides, strict=True):
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
        jobs = executor.map_array(self, [list(o) for o in job_overrides], ["hydra.sweep.dir"] * len(indices),
                                  list(indices), [f"job_id_for_{i}" for i in indices],
                                  [Singleton.get_state()] * len(indices))
        return [self._result(*job) for job in zip(jobs, job_overrides, indices, strict=True)]

    def _result(self, job: SlurmJob, overrides: list[str], idx: int) -> JobReturn:
        try:
            return job.results()[0]
        except UncompletedJobError as e:
            state = job.watcher.get_state(job.job_id, mode="cache")
            if state == "GONE":
                state = "unseen (cancelled before it started, or ended longer than MinJobAge ago)"
            log_file = f" (its log: {job.paths.stdout})" if job.paths.stdout.exists() else ""
            why = f"SLURM job {job.job_id} ended {state} without a result{log_file}"
            if isinstance(e, FailedJobError):  # the job's traceback sits between two dashed lines
                parts = str(e).split("-" * 22)
                last = parts[1].strip().splitlines()[-1] if len(parts) > 2 else str(e).splitlines()[0]
                why = f"SLURM job {job.job_id} failed outside the run: {last}"
            log.error("#%d %s: %s", idx, " ".join(filter_overrides(overrides)), why)
            self._record_unfinished(overrides, why)
            return JobReturn(overrides=overrides, status=JobStatus.COMPLETED, _return_value=None)

    def _record_unfinished(self, overrides: list[str], why: str) -> None:
        """Mark the run `failed` in its result.json unless it said in this sweep how it ended."""
        try:
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            run_dir = Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
            record = results.read_result(run_dir) or {}
            sweep_id = os.environ.get("ODENETS_SWEEP_ID")
            if record.get("sweep_id") == sweep_id and record.get("status") != "running":
                return  # the run recorded its own end (preempted, failed...)
            if record.get("status") in ("completed", "diverged"):
                return  # finished in an earlier sweep: nothing was lost
            record.update(run_name=run_dir.name, status="failed", error=why, sweep_id=sweep_id,
                          overrides=list(overrides), finished=results.now())
            run_dir.mkdir(parents=True, exist_ok=True)
            results.write_result(run_dir, record)
        except (HydraException, OmegaConfBaseException, OSError) as e:  # composing its config, writing its record
            log.error("could not record the unfinished job %s: %s", overrides, e)  # the report must not end the sweep


class SqueueFallbackWatcher(SlurmInfoWatcher):
    """submitit's job-state poller: `sacct`, or `squeue --states=all` where sacct fails (no accounting storage).
    squeue knows finished jobs for the cluster's MinJobAge (300 s by default); a job it no longer knows has
    ended (`GONE`), so its result is read or it is reported, never waited for."""

    sacct = True

    def update(self) -> None:
        command = self._make_command()  # ["sacct", ..., "-j", id, "-j", id]
        if command is None:
            return
        self._num_calls += 1
        ids = command[command.index("-j") + 1::2]
        output = self._sacct(command) if type(self).sacct else None
        if output is None:
            output = self._squeue(ids)
        if output is not None:
            self._info_dict.update(self.read_info(output))
        self._last_status_check = time.time()
        for job_id in self._registered - self._finished:
            if self.is_done(job_id, mode="cache"):
                self._finished.add(job_id)

    def _sacct(self, command: list[str]) -> str | None:
        try:
            return subprocess.run(command, capture_output=True, text=True, check=True, timeout=60).stdout
        except (OSError, subprocess.SubprocessError) as e:
            error = (getattr(e, "stderr", None) or str(e)).strip()
            if "accounting storage is disabled" in error or isinstance(e, OSError):
                type(self).sacct = False
                log.info("sacct unavailable (%s): job states come from squeue", error)
            else:
                log.warning("sacct failed (%s): job states from squeue this time", error)
            return None

    def _squeue(self, ids: list[str]) -> str | None:
        command = ["squeue", "--noheader", "--states=all", "--format=%i|%T|%N", f"--jobs={','.join(ids)}"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as e:
            log.warning("squeue failed (%s): job states unknown this time", e)
            return None
        if done.returncode and "Invalid job id" not in done.stderr:
            log.warning("squeue failed (%s): job states unknown this time", done.stderr.strip())
            return None
        header, lines = "JobID|State|NodeList", done.stdout.splitlines() if not done.returncode else []
        known = self.read_info("\n".join([header, *lines]))  # array ranges such as 12_[3-5] expanded
        gone = [f"{job}|GONE|" for job in self._registered - self._finished if job not in known]
        return "\n".join([header, *lines, *gone])

