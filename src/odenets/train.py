"""Training entry point: `python train.py scheme=rk4 depth=58` (or `python -m odenets.train`).

One run = one directory `outputs/runs/<run_name>` named by the config's fingerprint, so the same
command finds its own earlier work: a completed run is skipped (`force=true` reruns it) and an
interrupted one resumes from `checkpoints/last.ckpt`. Every run ends with a `result.json`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from odenets import results
from odenets.config import CONF_DIR, fingerprint, register_resolvers
from odenets.errors import ConfigError, one_line
from odenets.models import count_params
from odenets.schemes import scheme_from_config
from odenets.training import build, last_checkpoint

log = logging.getLogger("odenets")
register_resolvers()


def train(cfg: DictConfig) -> dict:
    """Train one configuration and return its result record (also written to result.json)."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    fp = fingerprint(cfg)
    previous = results.read_result(run_dir)
    if previous and previous.get("fingerprint") == fp and previous.get("status") in ("completed", "diverged") \
            and not cfg.force:
        log.info("%s: already %s, skipping (force=true reruns it)", run_dir.name, previous["status"])
        return previous

    started, t0 = results.now(), time.time()
    record = {"run_name": run_dir.name, "fingerprint": fp, "status": "running", "started": started,
              "sweep_id": os.environ.get("ODENETS_SWEEP_ID"), "versions": results.environment(),
              "config": OmegaConf.to_container(cfg, resolve=True)}
    trainer = None
    try:
        datamodule, task, trainer, history = build(cfg, run_dir)
        if "scheme" in cfg.model:
            tableau = scheme_from_config(cfg.model.scheme).tableau
            log.info("scheme %s: %d stages used, order %d", tableau.name, tableau.needed_stages, tableau.order)
        record["params"] = count_params(task.net)
        _single_run_argv()  # DDP children re-run this job alone, not the whole sweep
        resume = last_checkpoint(run_dir)
        if resume:
            record["resumed_from_step"] = torch.load(resume, map_location="cpu", weights_only=False)["global_step"]
            log.info("resuming %s from step %d", run_dir.name, record["resumed_from_step"])
        # last.ckpt is our own (it holds RNG states as numpy arrays), so it is loaded in full
        trainer.fit(task, datamodule=datamodule, ckpt_path=resume, weights_only=False)
        record["status"] = "diverged" if task.diverged_at is not None else "completed"
        record["diverged_at_step"] = task.diverged_at
        record["history"] = history.epochs
        record["epochs"] = len(history.epochs)
        final = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        record["metrics"] = {"final": final, "best": results.best_of(history.epochs)}
    except Exception as e:
        record["status"] = "failed"
        record["error"] = one_line(e)
        raise
    finally:
        record["wall_time_s"] = round(time.time() - t0, 3)
        record["finished"] = results.now()
        if trainer is None or trainer.is_global_zero:
            results.write_result(run_dir, record)
    return record


def _single_run_argv() -> None:
    """Lightning starts DDP ranks by re-running sys.argv; make that this job's own overrides."""
    sys.argv = [sys.argv[0], *HydraConfig.get().overrides.task]


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        train(cfg)
    except Exception as e:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            # a sweep goes on: the job's result.json says `failed` and why, the summary counts it
            log.error("job failed: %s", one_line(e))
        elif isinstance(e, ConfigError) and os.environ.get("ODENETS_TRACEBACK") != "1":
            _exit_bad_input(e)
        else:
            raise


class SweepReport(Callback):
    """Hydra callback: tags a multirun's jobs with one sweep id, then reports how they ended."""

    failed = 0

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        os.environ["ODENETS_SWEEP_ID"] = uuid.uuid4().hex

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_id = os.environ["ODENETS_SWEEP_ID"]
        records = [r for r in map(results.read_result, Path(config.hydra.sweep.dir).glob("*"))
                   if r and r.get("sweep_id") == sweep_id]
        counts = {s: sum(r["status"] == s for r in records) for s in ("completed", "diverged", "failed", "running")}
        print("sweep: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n), file=sys.stderr)
        for r in records:
            if r["status"] == "failed":
                print(f"  failed: {r['run_name']}: {r.get('error')}", file=sys.stderr)
        SweepReport.failed = counts["failed"]


def main() -> None:
    """Run. Bad input (config, overrides, data) ends with one line on stderr and exit status 2
    (HYDRA_FULL_ERROR=1 shows the traceback); a multirun exits with its number of failed jobs."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        os.environ["ODENETS_TRACEBACK"] = "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing; we report below
    try:
        _hydra_main()
    except Exception as e:
        if os.environ.get("ODENETS_TRACEBACK") == "1" or not _is_bad_input(e):
            raise
        _exit_bad_input(e)
    sys.exit(min(SweepReport.failed, 100))


def _is_bad_input(e: BaseException) -> bool:
    """Our config errors, Hydra's and OmegaConf's, and Hydra's command-line usage errors (raised by
    Hydra's own code); anything else is a bug and keeps its traceback."""
    if isinstance(e, (ConfigError, HydraException, OmegaConfBaseException)):
        return True
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return isinstance(e, ValueError) and tb is not None and f"{os.sep}hydra{os.sep}" in tb.tb_frame.f_code.co_filename


def _exit_bad_input(e: BaseException) -> None:
    print(f"error: {one_line(e)}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
