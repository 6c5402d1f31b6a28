"""Committed records a stranger can read (issue 26): no absolute path of the training machine, no host name,
every number, fingerprint and key as the run wrote it; collecting rewrites older records once; the script is
a thin command line over `odenets.reporting.collect`."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys

import pytest
import yaml

from helpers import REPO
from odenets.provenance import module_digest
from odenets.reporting.collect import collect, portable, write_record
from odenets.reporting.staleness import module_path
from odenets.results import REPRODUCED, comparison_key

# an absolute path: /name (a letter after the slash, so "lr /10" is none), ~/, or a drive letter
ABSOLUTE = re.compile(r"(?:^|[\s=:'\"(\[,])(?:/[A-Za-z_]|~/)|\b[A-Za-z]:\\")
MACHINE = "/home/alice/odenets"


def strings(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)
    elif isinstance(node, str):
        yield node


def on_machine(record: dict, root: str, data: str, host: str) -> dict:
    """A committed record with the paths and host name a training machine writes into its result.json."""
    run = copy.deepcopy(record)
    config = run["config"]
    config["paths"] = {"root_dir": root, "data_dir": data, "output_dir": f"{root}/outputs"}
    config["dataset"]["root"] = data
    config["logger"]["csv"]["save_dir"] = f"{root}/outputs/runs/{run['run_name']}"
    run["device"] = {**run["device"], "host": host}
    return run


def as_trained_on(record: dict) -> dict:
    """A committed record as Alice's laptop wrote it: data outside the project, path overrides, an evaluation."""
    run = on_machine(record, MACHINE, "/scratch/alice/data", "alice-laptop")
    run["overrides"] = [*run["overrides"], "paths.data_dir=/scratch/alice/data", f"+extra.cache={MACHINE}/cache"]
    run["evaluations"] = [{"overrides": [f"paths.data_dir={MACHINE}/data"], "device": {"host": "alice-laptop"}}]
    return run


@pytest.fixture(scope="module")
def committed() -> dict:
    return json.loads(next(iter(sorted((REPRODUCED / "cpu").glob("sine-*.json")))).read_text())


def test_no_committed_record_or_published_table_holds_an_absolute_path():
    records = sorted(REPRODUCED.rglob("*.json"))
    assert len(records) >= 500
    found = {p.name: s for p in records for s in strings(json.loads(p.read_text())) if ABSOLUTE.search(s)}
    assert not found, f"{len(found)} record(s) hold an absolute path, e.g. {next(iter(found.items()))}"
    assert not [p.name for p in records if "host" in json.loads(p.read_text()).get("device", {})]
    tables = sorted((REPO / "src" / "odenets" / "reporting" / "published").glob("*.yaml"))
    cited = [f"{p.name}:{n}" for p in tables for n, line in enumerate(p.read_text().splitlines(), 1)
             if ABSOLUTE.search(line)]
    assert tables and not cited, cited
    assert all(yaml.safe_load(p.read_text()) for p in tables)


def test_the_absolute_path_check_finds_what_it_should():
    for text in ("/work/rerun/data", "root=/home/u", "see (/tmp/x)", "~/data", "C:\\Users\\u"):
        assert ABSOLUTE.search(text), text
    for text in ("3 of 160 epochs (lr /10 after 2)", "outputs/runs/x", "https://physionet.org/x", "data"):
        assert not ABSOLUTE.search(text), text


def test_a_record_keeps_paths_relative_to_its_project_and_drops_the_machine(committed):
    run = as_trained_on(committed)
    record = portable(run)
    assert record["config"]["paths"] == {"root_dir": ".", "data_dir": None, "output_dir": "outputs"}
    assert record["config"]["dataset"]["root"] is None  # outside the project: nothing a reader could open
    assert record["config"]["logger"]["csv"]["save_dir"] == f"outputs/runs/{run['run_name']}"
    assert record["overrides"] == [*committed["overrides"], "+extra.cache=cache"]  # the data override dropped
    assert "host" not in record["device"] and record["device"]["cpu"] == committed["device"]["cpu"]
    assert record["evaluations"] == [{"overrides": ["paths.data_dir=data"], "device": {}}]
    assert not [s for s in strings(record) if ABSOLUTE.search(s)]
    # nothing that defines the run changes: fingerprint, key, numbers, provenance
    assert comparison_key(record["config"]) == comparison_key(run["config"]) == comparison_key(committed["config"])
    for key in ("fingerprint", "metrics", "history", "code", "packages", "data", "generated", "params"):
        assert record[key] == run[key], key
    assert portable(record) == record  # once is enough
    assert portable({**run, "run_dir": "/x", "sweep_id": "7", "stale_modules": []}) == record


def test_write_record_is_the_committed_format(tmp_path, committed):
    """The committed records are what `write_record` makes of the result.json their machine wrote."""
    path = write_record(tmp_path, on_machine(committed, "/work/rerun", "/work/rerun/data", "vm"))
    assert path == tmp_path / f"{committed['run_name']}.json"
    text = path.read_text()
    assert text.count("\n") == 1 and text == json.dumps(json.loads(text), separators=(",", ":")) + "\n"
    assert (REPRODUCED / "cpu" / path.name).read_text() == text


def test_collecting_rewrites_older_records_once_without_changing_a_number(tmp_path, committed):
    out, runs = tmp_path / "reproduced", tmp_path / "runs"
    out.mkdir()
    old = as_trained_on(committed)
    (out / f"{old['run_name']}.json").write_text(json.dumps(old, separators=(",", ":")) + "\n")
    done = collect(runs, "cpu", out)
    assert (done.written, done.rewritten) == (0, 1)
    text = (out / f"{old['run_name']}.json").read_text()
    assert json.loads(text) == portable(old) and '"/' not in text
    assert collect(runs, "cpu", out).rewritten == 0 and (out / f"{old['run_name']}.json").read_text() == text
    rewritten = json.loads(text)
    assert [rewritten[k] for k in ("fingerprint", "metrics", "history", "code")] == \
        [old[k] for k in ("fingerprint", "metrics", "history", "code")]


def test_the_command_line_collects_a_run_with_portable_paths(tmp_path, committed):
    run = as_trained_on(committed)
    run["code"]["modules"] = {name: module_digest(module_path(name)) for name in run["code"]["modules"]}  # current
    run_dir = tmp_path / "runs" / run["run_name"]
    run_dir.mkdir(parents=True)
    result = {k: v for k, v in run.items() if k != "evaluations"} | {"sweep_id": None}
    (run_dir / "result.json").write_text(json.dumps(result, indent=1))
    (run_dir / "eval.json").write_text(json.dumps({"evaluations": run["evaluations"]}))  # as odenets-eval does
    out = subprocess.run([sys.executable, "scripts/collect_results.py", "--runs", str(tmp_path / "runs"), "--out",
                          str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"1 run(s) of budget cpu written to {tmp_path / 'out'}\n"
    record = json.loads((tmp_path / "out" / f"{run['run_name']}.json").read_text())
    assert record == portable(run) and record["config"]["paths"]["root_dir"] == "."


def test_a_broken_committed_record_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "broken.json").write_text("{not json")
    out = subprocess.run([sys.executable, "scripts/collect_results.py", "--runs", str(tmp_path / "none"), "--out",
                          str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith(f"error: {tmp_path / 'out' / 'broken.json'} is not a readable run record")
