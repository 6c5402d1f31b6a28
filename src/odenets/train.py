"""Training entry point: `python train.py scheme=rk4 depth=58`, `python -m odenets.train`, `odenets-train`.

Bad input (config, overrides, data) ends with one line on stderr and exit status 2, a run directory that
another process holds with status 3, a write the file system refuses with status 4 (`HYDRA_FULL_ERROR=1`
shows the traceback; `odenets.errors` lists every status); a multirun exits with its number of jobs that
did not finish. What a run does is `odenets.run.lifecycle.train`.
"""

from __future__ import annotations

import logging
import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from odenets.config import CONF_DIR, register_resolvers
from odenets.errors import (
    EXIT_IN_USE,
    EXIT_WRITE,
    ConfigError,
    RunInUse,
    exit_bad_input,
    exit_with,
    is_bad_input,
    one_line,
    write_error,
)
from odenets.run.lifecycle import SweepReport, log_failed_job, train
from odenets.run.validation import validate_sweep

BOOKKEEPING = True  # records or checks runs, computes none of their numbers (odenets.reporting.staleness)
register_resolvers()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _hydra_main(cfg: DictConfig) -> float | None:
    try:
        record = train(cfg)
    except Exception as e:  # in a sweep any failure is the job's own; alone, only what has an exit status is caught
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            # a sweep goes on: the job's result.json says `failed` and why, the summary counts it
            log_failed_job(e)
            if isinstance(e, RunInUse):
                SweepReport.in_use.append(one_line(e))
        elif os.environ.get("ODENETS_TRACEBACK") == "1":
            raise
        elif isinstance(e, RunInUse):
            exit_with(e, EXIT_IN_USE)
        elif write_error(e):
            exit_with(write_error(e), EXIT_WRITE)
        elif isinstance(e, ConfigError):
            exit_bad_input(e)
        else:
            raise
    else:  # a search's objective (hparams_search=...): the metric it names, best over epochs
        return _objective(cfg.get("optimized_metric"), record)


def _objective(metric: str | None, record: dict) -> float | None:
    best = (record.get("metrics") or {}).get("best") or {}
    if metric and record.get("status") == "completed" and metric not in best:
        needs = " (val/ metrics need a validation split: dataset.val_fraction)" if metric.startswith("val/") else ""
        raise ConfigError(f"optimized_metric={metric!r} is not a metric of this run{needs}; its metrics: "
                          f"{', '.join(sorted(best))}")
    return best.get(metric) if metric else None


def main() -> None:
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        os.environ["ODENETS_TRACEBACK"] = "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing; we report below
    logging.raiseExceptions = False  # a full disk fails the run with one line, not a logging traceback per record
    try:
        if {"-m", "--multirun"} & set(sys.argv[1:]) or any(a.startswith("hparams_search=") for a in sys.argv[1:]):
            validate_sweep([a for a in sys.argv[1:] if "=" in a and not a.startswith("-")])  # before any job runs
        _hydra_main()
    except (ValueError, OSError, HydraException, OmegaConfBaseException) as e:  # a bug's traceback goes on up
        if os.environ.get("ODENETS_TRACEBACK") == "1":
            raise
        if write_error(e):  # Hydra creating the run directory or its .hydra files
            exit_with(write_error(e), EXIT_WRITE)
        if not is_bad_input(e):
            raise
        exit_bad_input(e)
    sys.exit(min(SweepReport.not_finished, 100))


if __name__ == "__main__":
    main()
