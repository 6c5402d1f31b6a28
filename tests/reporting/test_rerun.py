"""Rerunning a record (`odenets.reporting.rerun`) runs nothing the record says: an override that Hydra would
instantiate, that reaches into Hydra's own config, or that makes config from a string or a file outside conf/ is
refused in one line naming the record, before any process starts; every committed record passes as before."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest

from helpers import REPO
from odenets.errors import ConfigError
from odenets.provenance import cpu_kind
from odenets.reporting import rerun as rerun_module
from odenets.reporting.rerun import record_overrides, rerun, rerun_overrides
from odenets.results import REPRODUCED

PLANTED = [
    "optimizer._target_=os.system",
    "+foo._target_=builtins.print",
    "+scheduler._partial_=false",
    "+optimizer._args_=[rm]",
    "~optimizer._target_",
    "hydra.run.dir=/tmp/x",
    "+hydra.callbacks.x._target_=builtins.print",
    "hydra/launcher=slurm",
    "+optimizer@hydra.callbacks.x=sgd",
    "+trainer.plugins=[{_target_: builtins.print}]",
    "optimizer.extra={nested: {_target_: os.system}}",
    "optimizer.lr='${oc.create:{_target_: builtins.print}}'",
    "optimizer=../../../tmp/evil",
    "experiment=/tmp/evil",
    "seed=1,2",
    "model=lstm=",
]


@pytest.fixture(scope="module")
def committed() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((REPRODUCED / "cpu").glob("*.json"))]


@pytest.fixture
def quickest(committed) -> dict:
    return copy.deepcopy(min(committed, key=lambda r: r.get("wall_time_s") or float("inf")))


@pytest.mark.parametrize("override", PLANTED)
def test_an_override_that_could_run_code_is_refused_before_anything_runs(override, quickest, tmp_path,
                                                                         monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("a refused record started a process")
    monkeypatch.setattr(rerun_module.subprocess, "Popen", never)
    quickest["overrides"].insert(1, override)
    with pytest.raises(ConfigError) as refused:
        rerun(quickest, tmp_path / "out", ["force=true"])
    message = str(refused.value)
    assert message.startswith(f"record {quickest['run_name']}: override {override!r} refused (") and "\n" not in message
    assert not (tmp_path / "out").exists()


def test_every_committed_record_passes_with_the_command_it_had(committed, tmp_path):
    """Refusing nothing real: each record's overrides go to the rerun as typed, less `paths.*`, as before."""
    assert committed
    for record in committed:
        own = [o for o in record["overrides"] if not o.startswith(("paths.", "hydra"))]
        assert record_overrides(record) == own, record["run_name"]
    record = committed[0]
    assert rerun_overrides(record, tmp_path, ["force=true"], "/data") == [
        *record["overrides"], f"paths.output_dir={tmp_path}", "paths.data_dir=/data", "logger=none",
        "trainer.enable_progress_bar=false", "force=true"]


def test_revalidating_a_doctored_record_is_one_line_exit_2_and_runs_nothing(quickest, tmp_path):
    """`scripts/revalidate.py` on a record whose overrides would open a file as the Trainer is built."""
    marker = tmp_path / "MARKER"
    planted = f"+trainer.plugins=[{{_target_: builtins.open, _args_: ['{marker}', w]}}]"
    quickest["overrides"].append(planted)
    quickest.setdefault("device", {})["cpu_kind"] = cpu_kind()  # compared with itself: no reference checkout
    records = tmp_path / "records"
    records.mkdir()
    (records / f"{quickest['run_name']}.json").write_text(json.dumps(quickest))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "scripts/revalidate.py", "--budget", "cpu", "--records", str(records),
                          "--out", str(tmp_path / "out"), "--all", "--allow-dirty"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stdout + out.stderr[-2000:]
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(f"error: record {quickest['run_name']}: override {planted!r} refused (a mapping that "
                           "Hydra instantiates (_args_, _target_))"), line
    assert not marker.exists() and not list((tmp_path / "out").rglob("rerun.log"))


def test_grouping_a_doctored_record_refuses_it_before_composing(quickest, monkeypatch):
    """The tables compose a stale record's overrides to find its experiment (`collect.key_today`): the same check."""
    from odenets.reporting import collect

    monkeypatch.setattr(collect, "experiment_key", lambda o: pytest.fail("a refused record was composed"))
    quickest["overrides"].insert(1, "optimizer=../../../tmp/evil")
    with pytest.raises(ConfigError, match=r"override 'optimizer=\.\./\.\./\.\./tmp/evil' refused"):
        collect.key_today(quickest)
