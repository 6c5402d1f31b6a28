"""Revalidation (`make revalidate`, `odenets.reporting.revalidate`): which epochs a rerun covers, what counts as a
difference, and, on a real copy of the project with a real commit, that a pure refactor is revalidated while a
changed number is caught and stays stale."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, quick_overrides
from odenets.errors import ConfigError
from odenets.provenance import code_version, cpu_kind
from odenets.reporting.revalidate import (
    Experiment,
    choose_epochs,
    first_difference,
    machine_difference,
    plan,
    reference_code,
)


def entry(epoch, lr=0.1, **values) -> dict:
    return {"train/loss": 1.0 / epoch, "test/acc": 0.5 + epoch / 100, "epoch": epoch, "step": 10 * epoch,
            "time/train_s": 3.0 * epoch, "lr": lr, **values}


def record(epochs: int = 5, change_after: int | None = 2, wall: float = 600.0, **extra) -> dict:
    history = [entry(e, 0.1 if change_after is None or e < change_after else 0.01) for e in range(1, epochs + 1)]
    return {"status": "completed", "wall_time_s": wall, "history": history, "params": 1234,
            "data": {"sha256": "ab" * 8}, "diverged_at_step": None,
            "metrics": {"final": dict(history[-1]), "best": {"test/acc": 0.6}, "confusion": [[3, 1], [0, 4]]},
            **extra}


# --------------------------------------------------------------------------- which epochs
def test_a_quick_run_is_rerun_whole():
    assert choose_epochs(record(wall=119.0)) == (None, "whole: 119 s <= 120 s")
    assert choose_epochs(record(wall=119.0), whole_below_s=60)[0] == 3


def test_a_long_run_is_rerun_past_its_first_learning_rate_change():
    """The entry of epoch 2 shows the rate after that epoch's scheduler step, so epoch 3 is the first trained
    at it; without a schedule, two epochs cross an epoch boundary."""
    epochs, why = choose_epochs(record(epochs=5, change_after=2))
    assert epochs == 3 and why.startswith("3 epochs: the learning rate changes after epoch 2 (0.1 -> 0.01)")
    assert choose_epochs(record(epochs=20, change_after=10))[0] == 11
    assert choose_epochs(record(epochs=15, change_after=None)) == \
        (2, "2 epochs: an epoch boundary (the learning rate never changes before) (of 15)")
    assert choose_epochs(record(epochs=15, change_after=1))[0] == 2  # changed after epoch 1: epoch 2 trains at it


def test_a_rerun_that_would_cover_every_epoch_is_a_whole_one():
    epochs, why = choose_epochs(record(epochs=3, change_after=2))
    assert epochs is None and why.startswith("whole:") and why.endswith("which is all 3 epochs")
    assert choose_epochs(record(status="diverged"))[0] is None  # where it diverged, only a whole run says


def test_fractional_evaluations_count_by_the_epoch_they_fall_in():
    """Runs evaluated every n steps (the authors' MNIST recipe) log fractional epochs."""
    r = record(epochs=5, change_after=None)
    r["history"] = [entry(e, 0.1 if e < 2.5 else 0.01) for e in (0.8333, 1.6667, 2.5, 3.3333, 4.1667, 5)]
    assert choose_epochs(r)[0] == 4


# --------------------------------------------------------------------------- what is a difference
def test_an_identical_rerun_has_no_difference_but_its_times():
    old = record()
    again = copy.deepcopy(old)
    for e in again["history"]:
        e["time/train_s"] *= 2
    again["wall_time_s"] = 1.0
    assert first_difference(old, again, None) is None
    assert first_difference(old, {**again, "history": again["history"][:3]}, 3) is None


def test_the_first_differing_value_is_named_with_its_epoch():
    old = record()
    again = copy.deepcopy(old)
    again["history"][1]["test/acc"] = 0.5200000000000001  # one ulp
    again["history"][2]["train/loss"] = 0.0
    assert first_difference(old, again, None) == "test/acc at epoch 2: 0.52 recorded, 0.5200000000000001 rerun"
    again = copy.deepcopy(old)
    again["history"][0]["lr"] = 0.05
    assert first_difference(old, again, 3) == "lr at epoch 1: 0.1 recorded, 0.05 rerun"
    again = copy.deepcopy(old)
    again["history"][3]["train/loss"] = 9.0  # epoch 4: past a 3-epoch rerun
    assert first_difference(old, {**again, "history": again["history"][:3]}, 3) is None


def test_keys_logged_on_one_side_only_and_missing_evaluations_are_differences():
    old = record()
    again = copy.deepcopy(old)
    again["history"][0]["val/acc"] = 0.4
    assert first_difference(old, again, None) == "val/acc at epoch 1: '(not logged)' recorded, 0.4 rerun"
    del again["history"][0]["val/acc"], again["history"][0]["test/acc"]
    assert first_difference(old, again, None) == "test/acc at epoch 1: 0.51 recorded, '(not logged)' rerun"
    assert first_difference(old, {**old, "history": old["history"][:2]}, 3) == \
        "evaluations up to epoch 3: 3 recorded, 2 rerun"


def test_a_whole_rerun_also_compares_metrics_params_and_data():
    old = record()
    again = copy.deepcopy(old)
    again["metrics"]["confusion"][0][1] = 2
    assert first_difference(old, again, None) == "metrics.confusion: [[3, 1], [0, 4]] recorded, [[3, 2], [0, 4]] rerun"
    partial = {**again, "history": again["history"][:3]}
    assert first_difference(old, partial, 3) is None  # a partial rerun's final metrics are another epoch's
    assert first_difference(old, {**old, "params": 1235}, 3) == "params: 1234 recorded, 1235 rerun"
    assert first_difference(old, {**old, "data": {"sha256": "cd" * 8}}, 3).startswith("data.sha256: ")
    assert first_difference(old, {**old, "status": "diverged"}, None) == \
        "status: 'completed' recorded, 'diverged' rerun"
    nan = record()
    nan["history"][0]["train/loss"] = float("nan")
    assert first_difference(nan, copy.deepcopy(nan), None) is None  # NaN reproduced is reproduced


# --------------------------------------------------------------------------- which CPU kind's floats
ELSEWHERE = {"arch": "x86_64", "vendor": "GenuineIntel", "family": "6", "model": "143",
             "flags": ["amx_tile", "avx", "avx2", "avx512f", "avx_vnni", "fma"]}


def test_the_cpu_kind_names_what_kernels_dispatch_on():
    kind = cpu_kind()
    assert set(kind) == {"arch", "vendor", "family", "model", "flags"} and kind["arch"]
    assert kind["flags"] == sorted(kind["flags"]) and "smep" not in kind["flags"] and "fpu" not in kind["flags"]


def test_a_record_of_this_cpu_kind_is_compared_with_else_a_reference_rerun_is_made():
    def made(seed, wall, kind):
        r = record(wall=wall, run_name=f"run-s{seed}", config={"seed": seed}, code={"commit": "c" * 40})
        return Path(f"run-s{seed}.json"), {**r, "device": {"cpu_kind": kind} if kind else {}}
    mixed = Experiment("k", "row", [made(0, 100.0, ELSEWHERE), made(1, 110.0, cpu_kind()), made(2, 50.0, None)], 3)
    (here,) = plan([mixed])
    assert (here.method, here.record["run_name"], here.reference, here.estimate_s) == ("record", "run-s1", None, 110)
    other = Experiment("k", "row", [made(0, 100.0, ELSEWHERE), made(2, 50.0, None)], 0)
    assert plan([other]) == []  # nothing stale
    (there,) = plan([other], everything=True)
    assert (there.method, there.record["run_name"], there.reference) == ("reference", "run-s2", "c" * 40)
    assert there.estimate_s == 100.0 and there.reference_folder == "run-s2-all-ref-ccccccc"  # two reruns


def test_a_reference_rerun_differs_from_its_record_only_by_rounding():
    def first3(r):
        return {**r, "history": r["history"][:3]}
    old = record()
    again = copy.deepcopy(old)
    again["history"][1]["test/acc"] += 3e-7
    again["history"][2]["time/train_s"] = 99.0
    again["history"][4]["train/loss"] = 9.0  # past a 3-epoch rerun
    problem, apart = machine_difference(old, first3(again), 3)
    assert problem is None and apart == pytest.approx(3e-7, rel=1e-6)
    assert machine_difference(old, copy.deepcopy(old), None) == (None, 0.0)
    again["metrics"]["confusion"][0][0] = 2  # a whole run's metrics count too (counts may move by rounding)
    assert machine_difference(old, {**again, "history": old["history"]}, None)[1] == 1
    for change, said in [(("step", 21), "history[1].step: 20 recorded, 21 rerun"),
                         (("val/acc", 0.4), "history[1]: keys ")]:
        other = copy.deepcopy(old)
        other["history"][1][change[0]] = change[1]
        assert machine_difference(old, first3(other), 3)[0].startswith(said)
    assert machine_difference(old, {**first3(old), "params": 1}, 3)[0] == "params: 1234 recorded, 1 rerun"
    assert machine_difference(old, {**old, "history": old["history"][:2]}, 3)[0] == \
        "history: 3 values recorded, 2 rerun"


def _git_has(commit: str) -> bool:
    return subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{commit}^{{commit}}"],
                          capture_output=True).returncode == 0


def test_a_reference_checkout_must_hold_the_code_its_record_ran(tmp_path):
    head = code_version()["commit"]
    if head is None:
        pytest.skip("not a git checkout")
    fake = {"run_name": "r", "config": {"model": {"name": "horesnet"}},
            "code": {"commit": head, "dirty": False, "modules": {"odenets.models.horesnet": "0" * 16}}}
    with pytest.raises(ConfigError, match=rf"^the code at commit {head[:7]} is not what r ran: "
                                          r"odenets.models.horesnet differ\(s\) from its digests$"):
        reference_code(fake, tmp_path)
    assert (tmp_path / f"code-{head}" / "src/odenets/models/horesnet.py").is_file()  # exported, kept
    dirty = {**fake, "code": {**fake["code"], "dirty": True, "dirty_paths": ["src/odenets/models/horesnet.py"]}}
    with pytest.raises(ConfigError, match="^r was not made at a clean commit"):
        reference_code(dirty, tmp_path)
    with pytest.raises(ConfigError, match="^r was not made at a clean commit"):
        reference_code({**fake, "code": {**fake["code"], "commit": "--output=/tmp/x"}}, tmp_path)


def test_the_committed_records_commit_holds_their_code(tmp_path):
    """The reference path's premise on the real records: the quickest's commit, exported, has the digests it
    recorded (the digest of today's code reads old code as it did)."""
    from odenets.results import REPRODUCED, load_runs

    quickest = min(load_runs(REPRODUCED / "cpu"), key=lambda r: r.get("wall_time_s") or float("inf"))
    if not _git_has(quickest["code"]["commit"]):
        pytest.skip("the records' commit is not in this clone")
    assert (reference_code(quickest, tmp_path) / "conf" / "config.yaml").is_file()


# --------------------------------------------------------------------------- a real copy of the project
COPIED = ("src", "conf", "scripts", "train.py", "pyproject.toml", ".gitignore")
HORESNET = Path("src/odenets/models/horesnet.py")


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True).stdout


def _commit(root: Path, message: str) -> str:
    _git(root, "add", "-A")
    _git(root, "-c", "user.name=test", "-c", "user.email=test@example.org", "commit", "-q", "-m", message)
    return _git(root, "rev-parse", "HEAD").strip()


def _python(root: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root / "src"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("PROJECT_ROOT", None)
    return subprocess.run([sys.executable, *args], cwd=root, env=env, capture_output=True, text=True, timeout=timeout)


JUDGE = """
import json, sys
from pathlib import Path
from odenets.reporting.staleness import stale_modules
from odenets.results import REPRODUCED, commits
path, = (REPRODUCED / "cpu").glob("*.json")
record = json.loads(path.read_text())
print(json.dumps({"stale": stale_modules(record), "commits": commits([record]), "record": record}))
"""


def judged(root: Path) -> dict:
    out = _python(root, "-c", JUDGE)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the project (no committed records, no .git) as a git repository of its own, with one tiny
    committed record: HO-ResNet on 64 digits for 4 epochs (the rate drops after 2 and 3), budget cpu, made on this
    machine at the copy's first commit."""
    root = tmp_path_factory.mktemp("project")
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.json", ".pytest_cache")  # JSON: the records
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=skip)
        elif source.is_file():
            shutil.copy2(source, root / name)
    _git(root, "init", "-q")
    _commit(root, "the project")
    run = [o for o in quick_overrides(root) if not o.startswith("epochs=")]
    out = _python(root, "-m", "odenets.train", *run, "epochs=4", "budget=cpu", "logger=none")
    assert out.returncode == 0, out.stderr[-2000:]
    out = _python(root, "scripts/collect_results.py", "--budget", "cpu", "--runs", str(root / "outputs" / "runs"))
    assert out.returncode == 0 and out.stdout.startswith("1 run(s) of budget cpu written"), out.stdout + out.stderr
    _commit(root, "its record")
    return root


@pytest.fixture
def checkout(project, tmp_path) -> Path:
    """The project as the fixture left it, for one test to change (its git history included)."""
    root = tmp_path / "checkout"
    shutil.copytree(project, root, symlinks=True, ignore=shutil.ignore_patterns("outputs"))
    return root


def revalidate(root: Path, *args: str) -> subprocess.CompletedProcess:
    """`make revalidate BUDGET=cpu`, partial reruns forced (`--whole-below 0`: the tiny run takes seconds)."""
    return _python(root, "scripts/revalidate.py", "--budget", "cpu", "--whole-below", "0", *args)


def edit(root: Path, old: str, new: str, count: int = 1) -> None:
    path = root / HORESNET
    text = path.read_text()
    assert text.count(old) >= count, f"{HORESNET} no longer holds {old!r}: update this test's edit"
    path.write_text(text.replace(old, new))


@pytest.mark.slow
def test_a_pure_refactor_is_revalidated(checkout):
    edit(checkout, "n_blocks", "blocks_in_trunk", count=2)  # a local variable of HOResNet.__init__, renamed
    commit = _commit(checkout, "rename a local variable")
    before = judged(checkout)
    assert before["stale"] == ["odenets.models.horesnet"]

    out = revalidate(checkout)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    assert re.search(r"^revalidated .*\(seed 0, 3 epochs, \d+ s, CPU \d+ s\): 1 record\(s\) current$", out.stdout,
                     re.M), out.stdout
    after = judged(checkout)
    assert after["stale"] == [] and after["commits"].endswith(f", revalidated at {commit[:7]}")
    (entry,) = after["record"]["revalidated"]
    assert entry["commit"] == commit and entry["seed"] == 0 and entry["epochs"] == 3 and entry["whole"] is False
    assert (entry["method"], entry["reference"], entry["machine_max_abs_diff"]) == ("record", None, 0.0)
    assert entry["cpu_kind"] == after["record"]["device"]["cpu_kind"]  # made here: compared with the record
    assert "odenets.models.horesnet" in entry["modules"] and "odenets.results" not in entry["modules"]
    assert {k: v for k, v in after["record"].items() if k != "revalidated"} == before["record"]  # nothing else
    report = json.loads((checkout / "outputs/revalidate/cpu/report.json").read_text())
    assert report["commit"] == commit and [o["verdict"] for o in report["experiments"]] == ["revalidated"]
    assert list((checkout / "outputs/revalidate/cpu").glob("*-e3/runs/*/checkpoints/last.ckpt"))

    again = revalidate(checkout)  # nothing stale is left: nothing to rerun
    assert again.returncode == 0 and again.stdout.strip().startswith("0 of 1 experiments rerun: none;"), again.stdout


@pytest.mark.slow
def test_a_changed_number_is_caught_and_stays_stale(checkout):
    # He initialisation's negative slope, 0 -> 1 (leaky_relu with a = 0 is relu): gain sqrt(2) becomes 1
    edit(checkout, 'mode="fan_out", nonlinearity="relu")', 'a=1.0, mode="fan_out", nonlinearity="leaky_relu")')
    out = revalidate(checkout)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == ("error: uncommitted changes under src/ or conf/ (src/odenets/models/horesnet.py): "
                                  "commit them first, as a revalidation names the commit whose code it ran")
    _commit(checkout, "another initialisation")
    before = judged(checkout)

    out = revalidate(checkout)
    assert out.returncode == 1, out.stdout + out.stderr[-2000:]
    assert re.search(r"^stale .*\(seed 0, 3 epochs, \d+ s, CPU \d+ s\): train/loss at epoch 1: [\d.e-]+ recorded, "
                     r"[\d.e-]+ rerun$", out.stdout, re.M), out.stdout
    after = judged(checkout)
    assert after == before and after["stale"] == ["odenets.models.horesnet"]
    assert "revalidated" not in after["record"]
    report = json.loads((checkout / "outputs/revalidate/cpu/report.json").read_text())
    (outcome,) = report["experiments"]
    assert outcome["verdict"] == "stale" and outcome["detail"].startswith("train/loss at epoch 1: ")


@pytest.mark.slow
def test_a_record_of_another_cpu_kind_is_revalidated_against_its_own_code_rerun_here(checkout):
    """The record's floats came from another kind of CPU (faked), so the seed is rerun here twice, on the code of
    the record's commit and on today's: a refactor gives identical reruns, a changed number does not, and the
    reference rerun is made once."""
    path, = (checkout / "src/odenets/reporting/reproduced/cpu").glob("*.json")
    made = json.loads(path.read_text())
    made["device"]["cpu_kind"] = ELSEWHERE
    path.write_text(json.dumps(made, indent=1) + "\n")
    _commit(checkout, "its record, made elsewhere")
    original = made["code"]["commit"]
    edit(checkout, "n_blocks", "blocks_in_trunk", count=2)
    commit = _commit(checkout, "rename a local variable")

    out = revalidate(checkout)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    assert re.search(rf"^revalidated .*\(seed 0, 3 epochs, against a rerun at {original[:7]}, \d+ s, CPU \d+ s\): "
                     r"1 record\(s\) current; this machine's rounding: 0 at most$", out.stdout, re.M), out.stdout
    after = judged(checkout)
    assert after["stale"] == [] and after["commits"].endswith(f", revalidated at {commit[:7]}")
    (entry,) = after["record"]["revalidated"]
    assert (entry["commit"], entry["method"], entry["reference"]) == (commit, "reference", original)
    assert entry["machine_max_abs_diff"] == 0.0  # in truth made here: the reference rerun is the record
    assert entry["cpu_kind"] == cpu_kind() != ELSEWHERE
    kept = checkout / "outputs/revalidate/cpu"
    assert (kept / f"code-{original}/src/odenets/models/horesnet.py").read_text().count("blocks_in_trunk") == 0
    assert len(list(kept.glob(f"*-e3-ref-{original[:7]}/runs/*/checkpoints/last.ckpt"))) == 1

    edit(checkout, 'mode="fan_out", nonlinearity="relu")', 'a=1.0, mode="fan_out", nonlinearity="leaky_relu")')
    _commit(checkout, "another initialisation")
    out = revalidate(checkout)
    assert out.returncode == 1, out.stdout + out.stderr[-2000:]
    assert re.search(rf"^stale .*\(seed 0, 3 epochs, against a rerun at {original[:7]}, \d+ s, CPU \d+ s\): "
                     rf"against the reference rerun at {original[:7]}, train/loss at epoch 1: [\d.e-]+ reference, "
                     r"[\d.e-]+ rerun$", out.stdout, re.M), out.stdout
    assert "reused" not in out.stdout and "1 stale" in out.stdout
    assert len(judged(checkout)["record"]["revalidated"]) == 1  # unchanged
    report = json.loads((kept / "report.json").read_text())
    (outcome,) = report["experiments"]
    assert outcome["method"] == "reference" and outcome["machine_max_abs_diff"] == 0.0
    log = next(kept.glob(f"*-e3-ref-{original[:7]}/rerun.log")).stat().st_mtime_ns
    assert revalidate(checkout).returncode == 1  # again: the reference rerun is kept, today's too
    assert next(kept.glob(f"*-e3-ref-{original[:7]}/rerun.log")).stat().st_mtime_ns == log
