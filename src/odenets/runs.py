"""One run's life: skip, resume or start it, train, and write its `result.json`; and the sweep report.

A run lives in `outputs/runs/<run_name>`, named by the config's fingerprint, so the same command
finds its own earlier work: a completed (or diverged) run is skipped (`force=true` reruns it) and an
interrupted one resumes from `checkpoints/last.ckpt`. Every run ends with a `result.json` that says
how it ended, with its provenance (`odenets.provenance`).
"""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from odenets import results
from odenets.config import fingerprint
from odenets.errors import one_line
from odenets.models import count_params
from odenets.provenance import data_identity, provenance
from odenets.schemes import scheme_from_config
from odenets.training import build, last_checkpoint

log = logging.getLogger("odenets")
FINISHED = ("completed", "diverged")


def train(cfg: DictConfig) -> dict:
    """Train one configuration and return its result record (also written to result.json)."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    fp = fingerprint(cfg)
    previous = results.read_result(run_dir)
    if previous and previous.get("fingerprint") == fp and previous.get("status") in FINISHED and not cfg.force:
        log.info("%s: already %s, skipping (force=true reruns it)", run_dir.name, previous["status"])
        return previous

    t0 = time.time()
    record = {"run_name": run_dir.name, "fingerprint": fp, "status": "running", "started": results.now(),
              "sweep_id": os.environ.get("ODENETS_SWEEP_ID"), "overrides": list(HydraConfig.get().overrides.task),
              "config": OmegaConf.to_container(cfg, resolve=True)}
    trainer = datamodule = None
    accelerator = str(cfg.trainer.get("accelerator", "cpu")) if "trainer" in cfg else "cpu"
    started_with = provenance(accelerator)  # the code the run starts with (edits made while it runs don't count)
    try:
        datamodule, task, trainer, history = build(cfg, run_dir, user_overrides=record["overrides"])
        if "scheme" in cfg.model:
            tableau = scheme_from_config(cfg.model.scheme).tableau
            log.info("scheme %s: %d stages used, order %d", tableau.name, tableau.needed_stages, tableau.order)
        record["params"] = count_params(task.net)
        _single_run_argv()  # DDP children re-run this job alone, not the whole sweep
        resume = last_checkpoint(run_dir)
        if resume:
            record["resumed_from_step"] = _global_step(resume)
            log.info("resuming %s from step %d", run_dir.name, record["resumed_from_step"])
        # last.ckpt holds RNG states as numpy arrays, so it is loaded in full (it is our own file)
        trainer.fit(task, datamodule=datamodule, ckpt_path=resume, weights_only=False)
        record["status"] = "diverged" if task.diverged_at is not None else "completed"
        record["diverged_at_step"] = task.diverged_at
        record["history"] = history.epochs
        record["epochs"] = len(history.epochs)
        final = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        record["metrics"] = {"final": final, "best": results.best_of(history.epochs, task.higher_is_better()),
                             **task.summary()}
    except Exception as e:
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
            results.write_result(run_dir, record)
    return record


def _global_step(checkpoint: str) -> int:
    """The optimiser step a checkpoint was written at; memory-mapped, so its tensors are not read."""
    return int(torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)["global_step"])


def _single_run_argv() -> None:
    """Lightning starts DDP ranks by re-running sys.argv; make that this job's own overrides."""
    sys.argv = [sys.argv[0], *HydraConfig.get().overrides.task]


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
