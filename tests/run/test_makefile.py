"""The Makefile: every declared target defined exactly once, so `make <target>` runs what its help says;
`make tables` on a fresh clone; `make install-locked` installs the lock file."""

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO
from odenets.reporting.budget import load_budget
from odenets.reporting.cells import result_cell
from odenets.reporting.index import RunIndex
from odenets.reporting.published import load_table

MAKEFILE = (REPO / "Makefile").read_text()


def test_every_phony_target_is_defined_once():
    phony = re.search(r"^\.PHONY:(.*)$", MAKEFILE, re.M).group(1).split()
    defined = re.findall(r"^([\w-]+):", MAKEFILE, re.M)
    assert sorted(phony) == sorted(set(defined) - {"PHONY"})
    assert len(defined) == len(set(defined)), [t for t in set(defined) if defined.count(t) > 1]


# --------------------------------------------------------------------------- a fresh clone
def fresh_clone(dest: Path) -> Path:
    """A `git clone` of this checkout with its uncommitted changes laid over it (none in CI, which tests a clean
    clone): tracked and new files as the next commit would hold them, nothing git ignores (no outputs/, data/,
    .venv/)."""
    git = lambda *args: subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                                       check=True).stdout
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(dest)], check=True, timeout=300)
    for name in git("ls-files", "--modified", "--others", "--exclude-standard", "-z").split("\0"):
        if name and (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    for name in git("ls-files", "--deleted", "-z").split("\0"):
        if name:
            (dest / name).unlink(missing_ok=True)
    return dest


def make(clone: Path, *args: str) -> subprocess.Popen:
    """`make` started in `clone` with this interpreter (STAMP= : no venv is built), running the clone's own code."""
    env = {k: v for k, v in os.environ.items() if k not in ("PROJECT_ROOT", "DATA_DIR", "ODENETS_HOME")}
    env["PYTHONPATH"] = str(clone / "src")
    return subprocess.Popen(["make", "--no-print-directory", *args, f"PY={sys.executable}", "STAMP="], cwd=clone,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


@pytest.mark.slow
def test_make_tables_renders_every_budget_on_a_fresh_clone(tmp_path):
    """`make tables` (budget paper: no result stored) and `make tables BUDGET=cpu` (the committed records), each on
    a fresh clone, both at once: every table of the budget rendered, missing cells naming their command, rows
    without overrides saying why they have none, the committed records read: their numbers shown, or, where the code
    has changed since they ran (until `make revalidate`), counted as stale and left out."""
    clones = {budget: fresh_clone(tmp_path / budget) for budget in ("paper", "cpu")}
    assert not [c for c in clones.values() if (c / "outputs").exists() or (c / "data").exists()]
    running = {"paper": make(clones["paper"], "tables"), "cpu": make(clones["cpu"], "tables", "BUDGET=cpu")}
    try:
        for budget, process in running.items():
            stdout, stderr = process.communicate(timeout=2400)
            assert process.returncode == 0, f"make tables (budget {budget}): {stderr[-3000:]}"
            assert "Traceback" not in stderr
            out = clones[budget] / "outputs"
            names = load_budget(budget).tables
            assert {f"{name}.md" for name in names} <= {p.name for p in (out / "tables").iterdir()}
            assert (out / "report" / "index.html").is_file()
            tables = {name: (out / "tables" / f"{name}.md").read_text() for name in names}
            if budget == "paper":
                assert "python train.py experiment=rkcnn/mnist" in tables["rkcnn_table4"]  # a missing cell's command
                assert "another paper's model, not built here" in tables["rkcnn_table4"]
                assert "not built here" in tables["rkcnn_table5"]
            else:
                ours = re.search(r"^\| MNIST, HeunNet[^|]*\|([^|]*)\|", tables["heunnet_results"], re.M).group(1)
                stale = re.search(r"warning: (\d+) run\(s\) ran code that has changed since", stdout)
                if stale is None:  # ours: the committed records' mean ± std over their seeds
                    assert re.fullmatch(r"\s*9\d\.\d\d ± \d\.\d\d \(n=\d+\)\s*", ours), ours
                else:  # read, and left out as stale: the cell names the command that fills it
                    assert int(stale.group(1)) > 0 and re.fullmatch(r"\s*— \[[a-z]+\]\s*", ours), ours
    finally:  # a failed check leaves no make running
        for process in running.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)  # make and the script it runs
                process.wait()


def test_a_row_without_overrides_gets_a_cell_saying_why_it_has_no_command():
    """The crash behind `make tables` on a fresh clone: a published row that names no overrides (another paper's
    model) had no command to build."""
    table = load_table("rkcnn_table4")
    row = next(r for r in table.rows if not r.overrides)
    cell = result_cell(row, table, RunIndex(budget="paper"), "error")
    assert (cell.source, cell.command, cell.ours) == ("not built here", None, None)
    assert cell.paper == row.published.get("error") is not None


def test_install_locked_installs_the_lock_file():
    out = subprocess.run(["make", "-n", "install-locked", "PY=/venv/bin/python", "VENV=/venv"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    assert "/venv/bin/python -m pip install --quiet -r requirements.lock" in out
    assert "/venv/bin/python -m pip install --quiet --no-deps -e ." in out  # odenets itself, nothing resolved anew
    assert "sys.version_info[:2] == (3, 11)" in out and (REPO / "requirements.lock").is_file()
