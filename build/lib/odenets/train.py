"""Training entry point: `python train.py scheme=rk4 depth=58`, `python -m odenets.train`, `odenets-train`.

Bad input (config, overrides, data) ends with one line on stderr and exit status 2
(`HYDRA_FULL_ERROR=1` shows the traceback); a multirun exits with its number of failed jobs. What a
run does is `odenets.runs.train`.
"""

from __future__ import annotations

import logging
import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from odenets.config import CONF_DIR, register_resolvers
from odenets.errors import ConfigError, exit_bad_input, is_bad_input, one_line
from odenets.runs import SweepReport, train

log = logging.getLogger("odenets")
register_resolvers()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        train(cfg)
    except Exception as e:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            # a sweep goes on: the job's result.json says `failed` and why, the summary counts it
            log.error("job failed: %s", one_line(e))
        elif isinstance(e, ConfigError) and os.environ.get("ODENETS_TRACEBACK") != "1":
            exit_bad_input(e)
        else:
            raise


def main() -> None:
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        os.environ["ODENETS_TRACEBACK"] = "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing; we report below
    try:
        _hydra_main()
    except Exception as e:
        if os.environ.get("ODENETS_TRACEBACK") == "1" or not is_bad_input(e):
            raise
        exit_bad_input(e)
    sys.exit(min(SweepReport.failed, 100))


if __name__ == "__main__":
    main()
