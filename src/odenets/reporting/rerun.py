"""Rerun a committed record: its own overrides and seed, with the CPU thread count it ran with
(the same thread count sums in the same order), into a folder of our choosing (`make verify-results`,
`make revalidate`), on today's code or on another checkout's (`code`: its src/ replaces PYTHONPATH). The run is
`python -m odenets.train` in a subprocess, so it is exactly what a user's command computes; its output goes to
`<out>/rerun.log`, its cost is measured in wall and CPU seconds (CPU time stays meaningful on a machine that
other work shares)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from odenets.results import RESULT_FILE, get, read_result

LOG = "rerun.log"


def rerun_overrides(record: dict, out: Path, extra: Sequence[str] = (), data_dir: str | Path | None = None
                    ) -> list[str]:
    """The record's overrides as typed, less those naming where it ran (`paths.*`, `hydra.*`), writing to `out`,
    with no logger or progress bar, then `extra`."""
    own = [o for o in record.get("overrides") or [] if not o.startswith(("paths.", "hydra"))]
    where = [f"paths.output_dir={out}"] + ([f"paths.data_dir={data_dir}"] if data_dir is not None else [])
    return [*own, *where, "logger=none", "trainer.enable_progress_bar=false", *extra]


def thread_env(record: dict, code: str | Path | None = None) -> dict[str, str]:
    """This process's environment with the record's CPU thread count (OMP and MKL), where it recorded one, and
    `code`'s src/ as the only PYTHONPATH when given."""
    threads = str(get(record, "device.torch_threads") or "")
    where = {"PYTHONPATH": str(Path(code) / "src")} if code is not None else {}
    return {**os.environ, **({"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads} if threads else {}), **where}


@dataclass(frozen=True)
class Rerun:
    """A rerun's result.json (None if it failed, `failure` saying why) and what it cost."""
    result: dict | None
    failure: str | None
    wall_s: float
    cpu_s: float


def rerun(record: dict, out: str | Path, extra: Sequence[str] = (), data_dir: str | Path | None = None,
          code: str | Path | None = None) -> Rerun:
    """Train `record`'s run again into `out` (`<out>/runs/<run name>/`), `extra` overrides last, on the code of
    the checkout `code` (None: this installation's)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "odenets.train", *rerun_overrides(record, out, extra, data_dir)]
    start = time.perf_counter()
    with open(out / LOG, "w") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=thread_env(record, code))
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    cost = {"wall_s": time.perf_counter() - start, "cpu_s": usage.ru_utime + usage.ru_stime}
    if child.returncode != 0:
        last = ((out / LOG).read_text().strip().splitlines() or ["?"])[-1]
        return Rerun(None, f"rerun failed (exit {child.returncode}, {out / LOG}): {last}", **cost)
    results = [r for r in map(read_result, (p.parent for p in (out / "runs").glob(f"*/{RESULT_FILE}"))) if r]
    if len(results) != 1:
        return Rerun(None, f"the rerun left {len(results)} results under {out / 'runs'}, not one", **cost)
    return Rerun(results[0], None, **cost)

