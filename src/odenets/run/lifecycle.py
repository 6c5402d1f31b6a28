"""One run's life: lock, skip, resume or start it, train, and write its `result.json`; and the sweep report.

A run lives in `outputs/runs/<run_name>`, named by the config's fingerprint, so the same command finds its own
earlier work: a completed (or diverged) run is skipped (`force=true` starts it over) and an interrupted one
resumes from its last intact checkpoint (`odenets.run.checkpoints`). While it trains, the run holds its
directory's lock (`odenets.run.lock`): a second process for the same directory stops at once (exit status 3)
or, with `wait_for_lock=true`, waits. A directory holding another experiment (a `hydra.run.dir` set by hand)
is refused. A stop signal saves the state at the current step and ends the run as `preempted`
(`odenets.run.preemption`). Every run ends with a `result.json` that says how it ended, with its provenance.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import traceback
import uuid
from contextlib import nullcontext
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from odenets import results
from odenets.core.blocks import RKBlock
from odenets.errors import ConfigError, one_line
from odenets.models import count_params
from odenets.provenance import data_identity, provenance
from odenets.run import preemption
from odenets.run.checkpoints import discard, foreign, resume_point
from odenets.run.lock import run_lock
from odenets.run.training import build, run_stamp
from odenets.run.validation import validate

BOOKKEEPING = True  # records or checks runs, computes none of their numbers (odenets.reporting.staleness)
log = logging.getLogger("odenets")
FINISHED = ("completed", "diverged")
SWEEP_LOG = "sweep.log"  # in a sweep's directory: the traceback of every job that failed, by sweep and run


def train(cfg: DictConfig) -> dict:
    """Train one configuration and return its result record (also written to result.json)."""
    hydra = HydraConfig.get()
    run_dir = Path(hydra.runtime.output_dir)
    stamp = run_stamp(cfg, hydra.overrides.task)
    rank_zero = rank_zero_only.rank == 0  # DDP: rank 0 holds the lock for the run's ranks
    with run_lock(run_dir, wait=cfg.get("wait_for_lock", False)) if rank_zero else nullcontext(), \
            preemption.stop_signals():
        return _train(cfg, run_dir, stamp, multirun=hydra.mode == RunMode.MULTIRUN, rank_zero=rank_zero)


def _train(cfg: DictConfig, run_dir: Path, stamp: dict, multirun: bool, rank_zero: bool) -> dict:
    """A single run refuses a key it was given and does not read; a multirun's job leaves it out (info line)."""
    fp = stamp["fingerprint"]
    previous = results.read_result(run_dir)
    if previous and previous.get("fingerprint") not in (None, fp) and not cfg.force:
        raise foreign(run_dir, previous, stamp)
    if previous and previous.get("fingerprint") == fp and previous.get("status") in FINISHED and not cfg.force:
        log.info("%s: already %s, skipping (force=true starts it over)", run_dir.name, previous["status"])
        return previous
    if cfg.force and rank_zero:
        discard(run_dir)

    t0 = time.time()
    record = {"run_name": run_dir.name, "fingerprint": fp, "status": "running", "started": results.now(),
              "sweep_id": os.environ.get("ODENETS_SWEEP_ID"), "overrides": stamp["overrides"],
              "config": OmegaConf.to_container(cfg, resolve=True)}
    trainer = datamodule = None
    signum = None
    accelerator = str(cfg.trainer.get("accelerator", "cpu")) if "trainer" in cfg else "cpu"
    started_with = provenance(accelerator)  # the code the run starts with (edits made while it runs don't count)
    try:
        for key, why in validate(cfg, stamp["overrides"]).items():
            if not multirun:
                raise ConfigError(f"{key} is set but {why}; remove it")
            log.info("%s is left out of this job: %s", key, why)
        datamodule, task, trainer, history = build(cfg, run_dir, stamp)
        block = next((m for m in task.net.modules() if isinstance(m, RKBlock)), None)
        if block is not None:  # the scheme as the model parsed it, its stages as its blocks evaluate them
            log.info("scheme %s: %d stages used, order %d", block.scheme.name, block.stages, block.scheme.tableau.order)
        record["params"] = count_params(task.net)
        _single_run_argv()  # DDP children re-run this job alone, not the whole sweep
        resume, step = resume_point(run_dir, stamp)
        if resume:
            record["resumed_from_step"] = step
            log.info("resuming %s from %s at step %d", run_dir.name, Path(resume).name, step)
        try:
            # data only (AtomicCheckpointIO reads through checkpoints.load_checkpoint whatever Lightning asks)
            trainer.fit(task, datamodule=datamodule, ckpt_path=resume, weights_only=True)
        except (preemption.Preempted, SIGTERMException) as e:
            signum = getattr(e, "signum", None) or preemption.requested() or preemption.SIGNALS[0]
            record["status"] = "preempted"
            record["preempted"] = {"signal": signal.Signals(signum).name, "step": trainer.global_step}
            log.warning("%s: stopped by %s at step %d; rerunning the same command resumes it there",
                        run_dir.name, record["preempted"]["signal"], trainer.global_step)
        else:
            record["status"] = "diverged" if task.diverged_at is not None else "completed"
            record["diverged_at_step"] = task.diverged_at
            final = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
            higher = task.higher_is_better()
            record["metrics"] = {"final": final, "best": results.best_of(history.epochs, higher), **task.summary()}
            if "val" in task.eval_stages:  # the test values at the epoch best.ckpt holds, chosen on validation
                record["metrics"]["at_val_best"] = results.at_val_best(history.epochs, task.monitor, higher)
        record["history"] = history.epochs
        record["epochs"] = len(history.epochs)
    except Exception as e:  # any failure is recorded, then re-raised: nothing is swallowed here
        record["status"] = "failed"
        record["error"] = one_line(e)
        raise
    finally:
        record["wall_time_s"] = round(time.time() - t0, 3)
        record["finished"] = results.now()
        record.update(provenance(accelerator, started_with))
        if datamodule is not None and datamodule.train is not None:
            record["data"] = data_identity(datamodule)
        if trainer is None or trainer.is_global_zero:
            _write_result(run_dir, record)
    if signum is not None:
        if rank_zero:
            preemption.requeue(signum)
        sys.exit(128 + signum)
    return record


def _write_result(run_dir: Path, record: dict) -> None:
    """Write result.json; when the run is already failing on a write, that error is the one reported."""
    failing = sys.exc_info()[1]
    try:
        results.write_result(run_dir, record)
    except OSError as e:
        if failing is None:
            raise
        log.error("result.json not written either: %s", one_line(e))


def _single_run_argv() -> None:
    """Lightning starts DDP ranks by re-running sys.argv; make that this job's own overrides."""
    sys.argv = [sys.argv[0], *HydraConfig.get().overrides.task]


def log_failed_job(e: BaseException) -> None:
    """A sweep's job that failed (the sweep goes on): one line on the terminal, its traceback in the job's
    `train.log` and appended to the sweep's log (`SWEEP_LOG`)."""
    log.error("job not run to the end: %s", one_line(e), exc_info=e)  # the console keeps the one line
    hydra = HydraConfig.get()
    entry = (f"[{results.now()}] sweep {os.environ.get('ODENETS_SWEEP_ID', '-')[:8]}, "
             f"{Path(hydra.runtime.output_dir).name}: job not run to the end\n{''.join(traceback.format_exception(e))}")
    try:
        with open(Path(hydra.sweep.dir) / SWEEP_LOG, "a") as f:  # one write: jobs running at once do not interleave
            f.write(entry)
    except OSError as error:
        log.warning("the sweep's log %s not written: %s", Path(hydra.sweep.dir) / SWEEP_LOG, one_line(error))


class SweepReport(Callback):
    """Hydra callback: tags a multirun's jobs with one sweep id, then reports how they ended. The exit status
    (`not_finished`) counts the jobs that did not complete or diverge: failed,
    pre-empted, and (with the in-process launcher) those whose directory another process held."""

    not_finished = 0
    in_use: list[str] = []

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        os.environ["ODENETS_SWEEP_ID"] = uuid.uuid4().hex
        SweepReport.in_use = []

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_id = os.environ["ODENETS_SWEEP_ID"]
        records = [r for r in map(results.read_result, Path(config.hydra.sweep.dir).glob("*"))
                   if r and r.get("sweep_id") == sweep_id]
        counts = {s: sum(r["status"] == s for r in records)
                  for s in ("completed", "diverged", "failed", "preempted", "running")}
        counts["in use elsewhere"] = len(SweepReport.in_use)
        print("sweep: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n), file=sys.stderr)
        for r in records:
            if r["status"] not in FINISHED:
                why = r.get("error") or (f"stopped by {r['preempted']['signal']} at step {r['preempted']['step']}"
                                         if r.get("preempted") else r["status"])
                print(f"  {r['status']}: {r['run_name']}: {why}", file=sys.stderr)
        for line in SweepReport.in_use:
            print(f"  in use elsewhere: {line}", file=sys.stderr)
        if counts["failed"]:
            print(f"  tracebacks: {Path(config.hydra.sweep.dir) / SWEEP_LOG} and each run's train.log", file=sys.stderr)
        SweepReport.not_finished = sum(n for s, n in counts.items() if s not in FINISHED)
