"""Rerun a committed record: its own overrides and seed, with the CPU thread count it ran with
(the same thread count sums in the same order), into a folder of our choosing (`make verify-results`,
`make revalidate`), on today's code or on another checkout's (`code`: its src/ replaces PYTHONPATH). The run is
`python -m odenets.train` in a subprocess, so it is exactly what a user's command computes; its output goes to
`<out>/rerun.log`, its cost is measured in wall and CPU seconds (CPU time stays meaningful on a machine that
other work shares).

A record is data, and nothing read from it may run code: training instantiates its optimizer, scheduler, loggers
and Trainer from the config (`hydra.utils.instantiate`), so an override that names what to instantiate would be
called. `record_overrides` refuses, with one line naming the record and the override, any override with a key or
package component `_target_`, `_partial_`, `_args_`, `_recursive_` or `_convert_` (Hydra's instantiation keys) or
`hydra` (Hydra's own config: callbacks, launchers, search path), a value holding a mapping with such a key or an
interpolation (`${oc.create:...}` makes a config node from a string when the run reads it), a config-group choice
outside conf/ (`optimizer=../../x`), a sweep, or a line Hydra cannot parse."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from odenets.errors import ConfigError
from odenets.results import RESULT_FILE, get, read_result

LOG = "rerun.log"
INSTANTIATION_KEYS = frozenset({"_target_", "_partial_", "_args_", "_recursive_", "_convert_"})


_parser = functools.cache(OverridesParser.create)


def _unsafe(override: str) -> str | None:
    """Why `override`, read from a record, could make the rerun run code (module docstring); None if it cannot."""
    try:
        (parsed,) = _parser().parse_overrides([override])
    except HydraException:
        return "Hydra cannot parse it"
    if parsed.is_sweep_override():
        return "a sweep, where a record is one run"
    key = parsed.key_or_group
    names = set(re.split(r"[./]", f"{key}.{parsed.package or ''}"))
    if names & INSTANTIATION_KEYS:
        return f"a key that Hydra instantiates ({', '.join(sorted(names & INSTANTIATION_KEYS))})"
    if "hydra" in names:
        return "Hydra's own config"
    leaves, values = [], [parsed.value()]
    while values:
        value = values.pop()
        if isinstance(value, dict):
            if INSTANTIATION_KEYS & set(value):
                return f"a mapping that Hydra instantiates ({', '.join(sorted(INSTANTIATION_KEYS & set(value)))})"
            values += value.values()
        elif isinstance(value, list):
            values += value
        elif isinstance(value, str):
            leaves.append(value)
    if any("${" in leaf for leaf in leaves):
        return "an interpolation, resolved when the run reads it"
    outside = lambda path: path.startswith("/") or ".." in PurePosixPath(path).parts
    if outside(key) or ("." not in key and any(map(outside, leaves))):  # a group or its choice: a file's path
        return "a config file outside conf/"
    return None


def record_overrides(record: dict) -> list[str]:
    """The record's overrides as typed, less those naming where it ran (`paths.*`). `ConfigError` naming the record
    and the first override that could run code (module docstring)."""
    own = [o for o in record.get("overrides") or [] if not str(o).startswith("paths.")]
    for override in own:
        why = _unsafe(override) if isinstance(override, str) else "not a string"
        if why is not None:
            raise ConfigError(f"record {record.get('run_name')}: override {override!r} refused ({why}); a record's "
                              "overrides may set config values and choose files under conf/, nothing that runs code")
    return own


def rerun_overrides(record: dict, out: Path, extra: Sequence[str] = (), data_dir: str | Path | None = None
                    ) -> list[str]:
    """The record's overrides (`record_overrides`: `ConfigError` for one that could run code), writing to `out`,
    with no logger or progress bar, then `extra`."""
    own = record_overrides(record)
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
    the checkout `code` (None: this installation's). `ConfigError`, before anything runs, for a record override
    that could run code (`record_overrides`)."""
    out = Path(out)
    command = [sys.executable, "-m", "odenets.train", *rerun_overrides(record, out, extra, data_dir)]
    out.mkdir(parents=True, exist_ok=True)
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

