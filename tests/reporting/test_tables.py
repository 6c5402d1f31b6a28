"""Tables from stored results: values, missing cells with their command, seeds, budgets; the
reproduce plan; launchers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import OmegaConf

from helpers import REPO, cli, results_under
from odenets.config import CONF_DIR, compose_row
from odenets.provenance import dirty_code, imported_modules
from odenets.reporting.index import RunIndex
from odenets.reporting.published import load_table, row_seeds
from odenets.reporting.render import MISSING, p_value, to_frame, to_latex, to_markdown
from odenets.reporting.report import readme_results, write_report
from odenets.reporting.reproduce import BUDGETS, Sweep, pack, plan, trained_rows
from odenets.reporting.stats import permutation_p
from odenets.reporting.summary import results_summary, verdict_summary
from odenets.reporting.tables import render, write_all
from odenets.results import REPRODUCED, frame, load_runs


def current_code() -> dict[str, str]:
    """Module digests of today's code, as a run made now would record them."""
    import odenets.models  # noqa: F401  (the modules a training run imports)
    import odenets.run.training  # noqa: F401

    return imported_modules()


def fake_run(runs: Path, overrides: list[str], seed: int, acc: float, budget: str = "paper",
             status: str = "completed", history: list[dict] | None = None) -> None:
    cfg = compose_row([*overrides, f"budget={budget}", f"seed={seed}"])
    run_dir = runs / f"run-{len(list(runs.glob('*')))}"
    run_dir.mkdir(parents=True)
    record = {"config": OmegaConf.to_container(cfg, resolve=True), "status": status, "epochs": 2,
              "metrics": {"final": {"test/acc": acc - 0.01}, "best": {"test/acc": acc}},
              "history": history or [{"epoch": 1, "time/train_s": 10.0, "train/acc": 0.5, "test/acc": acc}],
              "code": {"commit": "0123456789abcdef", "dirty": False, "modules": current_code()},
              "fingerprint": f"{overrides}{budget}{seed}{status}"}
    (run_dir / "result.json").write_text(json.dumps(record))


@pytest.fixture
def table4_runs(tmp_path):
    rows = load_table("horesnet_table4")["rows"]
    euler, midpoint, rk4 = rows[0]["overrides"], rows[1]["overrides"], rows[2]["overrides"]
    curve = lambda t: [{"epoch": 1, "time/train_s": t, "train/acc": 0.7}, {"epoch": 2, "time/train_s": 2 * t,
                                                                            "train/acc": 0.9}]
    fake_run(tmp_path, euler, 0, 0.9271, history=curve(40.0))
    fake_run(tmp_path, midpoint, 0, 0.9400, history=curve(20.0))
    fake_run(tmp_path, midpoint, 1, 0.9420, history=curve(20.0))  # a second seed
    fake_run(tmp_path, rk4, 0, 0.9700, budget="smoke")  # another budget: never mixed into paper cells
    fake_run(tmp_path, rk4, 1, 0.1000, status="diverged")
    return tmp_path


def test_cells_values_missing_cells_seeds_and_budgets(table4_runs):
    t = render("horesnet_table4", RunIndex(table4_runs, budget="paper"))
    rows = {row: cells for row, cells, _ in t.rows}
    euler, midpoint, rk4 = rows["Euler"], rows["Midpoint"], rows["RK-4"]
    assert euler["accuracy"].ours == pytest.approx(92.71) and euler["accuracy"].diff == pytest.approx(0.0)
    assert midpoint["accuracy"].ours == pytest.approx(94.20)  # best of two seeds
    s = midpoint["accuracy"].spread
    assert (s.n, round(s.mean, 2), round(s.std, 2)) == (2, 94.10, 0.14) and midpoint["accuracy"].source == "runs"
    # RK-4: only a smoke run and a diverged one: the paper-budget cell is missing and says how to fill it
    assert rk4["accuracy"].ours is None and rk4["accuracy"].command.endswith("scheme=rk4 depth=58 budget=paper")
    assert rk4["accuracy"].left_out == "1 diverged"
    # time to 0.80 train accuracy: Euler 50 s, midpoint 25 s (linear within the epoch) -> 2x
    assert midpoint["speedup_080"].ours == pytest.approx(2.0) and euler["speedup_080"].ours == pytest.approx(1.0)
    assert rows["Ada RK-8"]["extra_params"].ours == 2
    smoke = {row: cells for row, cells, _ in render("horesnet_table4", RunIndex(table4_runs, budget="smoke")).rows}
    assert smoke["RK-4"]["accuracy"].ours == pytest.approx(97.0) and smoke["Euler"]["accuracy"].ours is None


def test_one_rendering_for_markdown_csv_latex_and_html(table4_runs, tmp_path):
    t = render("horesnet_table4", RunIndex(table4_runs, budget="paper"))
    md = to_markdown(t)
    # provenance in columns: n, mean ± std, epochs, budget note, commit
    assert re.search(r"\| Midpoint\s+\|.*\| 2\s+\| 94\.10 ± 0\.14\s+\| 2\s+\| the recipe as published\s+\| 0123456", md)
    assert f"{MISSING} [a]" in md and "[a] `python train.py experiment=horesnet/cifar10 scheme=rk4" in md
    assert "Sources:" not in md
    frame_ = to_frame(t)
    assert {"table", "budget", "Row", "n", "mean ± std", "epochs", "commit"} <= set(frame_.columns)
    assert frame_.loc[frame_["Row"].str.startswith("Midpoint"), "mean ± std"].item() == "94.10 ± 0.14"
    assert "\\begin{table}" in to_latex(t)
    md_path, page = write_report(tmp_path / "report", [t], tmp_path / "no-figures", "paper")
    html = page.read_text()
    assert "<table>" in html and 'title="runs"' in html and "94.10 ± 0.14" in html and md_path.is_file()


def test_write_all(table4_runs, tmp_path):
    out = tmp_path / "tables"
    write_all(out, RunIndex(table4_runs, budget="paper"), ("horesnet_table4", "horesnet_table2"),
              tmp_path / "no-bench.json", log=lambda _: None)
    assert {p.name for p in out.iterdir()} >= {"horesnet_table4.md", "horesnet_table4.csv", "horesnet_table4.tex",
                                               "horesnet_table2.md", "tables.csv"}
    assert "make bench" in (out / "horesnet_table2.md").read_text()


def test_claims_are_tested_in_sign_and_size(tmp_path):
    rows = {r["row"]: r["overrides"] for r in load_table("heunnet_results")["rows"]}
    for seed, (heun, lstm) in enumerate([(98.6, 98.5), (98.7, 98.6), (98.8, 98.5), (98.65, 98.55)]):
        fake_run(tmp_path, rows["MNIST, HeunNet"], seed, heun / 100, budget="cpu")
        fake_run(tmp_path, rows["MNIST, LSTM"], seed, lstm / 100, budget="cpu")
    fake_run(tmp_path, rows["ECG, HeunNet"], 0, 0.97, budget="cpu")  # one seed: no interval
    t = render("heunnet_results", RunIndex(tmp_path, budget="cpu"), memory=False)
    verdicts = {(v.claim["better"], v.claim["worse"]): v for v in t.verdicts}
    mnist = verdicts[("MNIST, HeunNet", "MNIST, LSTM")]
    assert mnist.sign == "supported" and mnist.comparison.difference == pytest.approx(0.15)
    assert mnist.paper_diff == pytest.approx(98.26 - 95.44) and mnist.size == "size not reproduced"
    assert verdicts[("ECG, HeunNet", "ECG, LSTM")].sign == "no runs yet"
    assert verdicts[("MNIST, HeunNet", "MNIST, GRU")].sign == "no runs yet"
    assert verdicts[("MNIST, HeunNet", "MNIST, GRU")].size == "no runs yet"
    md = to_markdown(t)
    assert "Claims tested on our seeds" in md and "size not reproduced" in md and "supported" in md


def _make_stale(runs: Path, name: str) -> None:
    path = runs / name / "result.json"
    record = json.loads(path.read_text())
    module = next(iter(record["code"]["modules"]))
    record["code"]["modules"][module] = "0" * 64  # the code it ran has changed since
    path.write_text(json.dumps(record))


def test_stale_runs_stand_in_only_where_no_current_run_covers_the_row(tmp_path):
    rows = {r["row"]: r["overrides"] for r in load_table("heunnet_results")["rows"]}
    fake_run(tmp_path, rows["MNIST, HeunNet"], 0, 0.90, budget="cpu")  # run-0: stale, beside a current seed
    fake_run(tmp_path, rows["MNIST, HeunNet"], 1, 0.98, budget="cpu")
    fake_run(tmp_path, rows["MNIST, LSTM"], 0, 0.97, budget="cpu")  # run-2: stale, alone
    fake_run(tmp_path, rows["MNIST, LSTM"], 1, 0.96, budget="cpu")  # run-3: stale, alone
    for name in ("run-0", "run-2", "run-3"):
        _make_stale(tmp_path, name)
    heun, lstm = {"overrides": rows["MNIST, HeunNet"]}, {"overrides": rows["MNIST, LSTM"]}
    strict, shown = RunIndex(tmp_path, budget="cpu"), RunIndex(tmp_path, budget="cpu", allow_stale=True)
    assert [r["config"]["seed"] for r in strict.runs_for(heun)] == [1] and not strict.runs_for(lstm)
    assert len(strict.stale_for(heun)) == 1 and len(strict.stale_for(lstm)) == 2
    assert [r["config"]["seed"] for r in shown.runs_for(heun)] == [1] and len(shown.runs_for(lstm)) == 2
    assert len(shown.stale_for(heun)) == 1 and not shown.stale_for(lstm) and shown.stale_left_out() == 1
    (v,) = [v for v in render("heunnet_results", shown, memory=False).verdicts
            if (v.claim["better"], v.claim["worse"]) == ("MNIST, HeunNet", "MNIST, LSTM")]
    assert v.stale == (False, True)
    assert "96.50 ± 0.71 (n=2, STALE)" in to_markdown(render("heunnet_results", shown, memory=False))


def test_an_undecided_claim_says_how_many_seeds_would_decide_it(tmp_path):
    rows = {r["row"]: r["overrides"] for r in load_table("heunnet_results")["rows"]}
    for seed, (heun, lstm) in enumerate([(98.6, 98.5), (98.4, 98.6), (98.8, 98.5)]):
        fake_run(tmp_path, rows["MNIST, HeunNet"], seed, heun / 100, budget="cpu")
        fake_run(tmp_path, rows["MNIST, LSTM"], seed, lstm / 100, budget="cpu")
    (v,) = [v for v in render("heunnet_results", RunIndex(tmp_path, budget="cpu"), memory=False).verdicts
            if v.claim["worse"] == "MNIST, LSTM" and v.claim["better"] == "MNIST, HeunNet"]
    assert v.sign == "inconclusive" and int(v.decide) > 3 and 0 < v.permutation <= 1
    assert v.size == "size not reproduced"  # +2.82 lies far outside [-0.5, +0.6]


def test_a_row_names_its_seeds_as_a_list_or_a_count():
    assert row_seeds({"seeds": {"cpu": 3}}, "cpu") == (0, 1, 2)
    assert row_seeds({"seeds": {"cpu": [4, 7]}}, "cpu") == (4, 7)
    assert row_seeds({"seeds": {"cpu": 3}}, "paper") is None and row_seeds({}, "cpu") is None
    planned = dict(trained_rows(["heunnet_results", "heunnet_alpha"], "cpu"))
    alpha = ("experiment=heunnet/sine", "model=ode_rnn", "scheme=heun_ext", "alpha=0.8")
    assert planned[alpha] == tuple(range(56)) and len(planned[(*alpha[:3], "alpha=0.5")]) == 8


def test_a_permutation_p_that_rounds_to_zero_is_printed_as_a_bound():
    separated = permutation_p([97.1, 97.2, 97.0, 97.15], [97.4, 97.5, 97.45, 97.35]) or 0
    assert separated == 2 / 70 and p_value(separated) == "0.029"  # the smallest 4 + 4 seeds allow
    eight = permutation_p(np.arange(8.0), np.arange(8.0) + 10)
    assert eight == 2 / 12870 and p_value(eight) == "< 0.001" and p_value(None) == MISSING


def test_the_readme_notebook_example_runs_on_the_committed_records(monkeypatch):
    monkeypatch.chdir(REPO)
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
               if "import frame" in b]
    lines = code.strip().splitlines()
    namespace: dict = {}
    exec("\n".join(lines[:-1]), namespace)
    table = eval(lines[-1], namespace)
    assert len(table) >= 3 and (table["count"] >= 1).all() and table["mean"].between(0, 1).all()


def test_results_frame_has_one_row_per_run(table4_runs):
    runs = frame(table4_runs)
    assert len(runs) == 5 and {"status", "seed", "best.test/acc", "final.test/acc", "commit", "stale"} <= set(runs)
    assert sorted(runs["status"]) == ["completed"] * 4 + ["diverged"]


def test_pack_rows_into_sweeps():
    rows = [("experiment=x", "scheme=euler", "depth=10"), ("experiment=x", "scheme=rk4", "depth=10"),
            ("experiment=x", "scheme=euler", "depth=18"), ("experiment=x", "scheme=rk4", "depth=18"),
            ("experiment=x", "scheme=rk4", "depth=26"), ("model.channels=[1,2]", "model=a"),
            ("model.channels=[3,4]", "model=a")]
    sweeps = pack([(r, None) for r in rows])
    assert Sweep(("experiment=x", "scheme=euler"), "depth", ("10", "18")) in sweeps
    assert Sweep(("experiment=x", "scheme=rk4"), "depth", ("10", "18", "26")) in sweeps
    assert sum(s.key is None for s in sweeps) == 2  # list values are never swept with commas
    grouped = pack([(("model.layers=2", "model=a"), None), (("model.layers=2", "model=b"), None)])
    assert [s.key for s in grouped] == [None, None]  # a group is never swept beside keys inside it
    assert Sweep(("a=1",), "b", ("2", "3")).overrides("smoke", [0, 1], "joblib") == \
        ["a=1", "b=2,3", "budget=smoke", "seed=0,1", "hydra/launcher=joblib"]


def test_plan_covers_every_trained_row_once():
    rows = [r for r, _ in trained_rows(BUDGETS["paper"][0])]
    assert len(rows) == len(set(rows))
    assert ("experiment=horesnet/cifar10", "scheme=rk8_adaptive", "depth=58") in rows
    assert not any("model.method=dopri5" in " ".join(r) for r in rows)  # the IRK row is not trainable (paper)
    commands = plan("smoke", [0], "basic")
    assert ["experiment=horesnet/lr_robustness", "budget=smoke"] in commands
    assert all("budget=smoke" in c for c in commands)


@pytest.mark.parametrize("budget", sorted(BUDGETS))
def test_every_planned_multirun_composes(budget):
    """Hydra composes a multirun's base config before expanding its sweeps: each command must compose."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        for command in plan(budget, [0, 1], "basic"):
            try:
                loader.load_configuration("config", command, run_mode=RunMode.MULTIRUN)
            except Exception as error:
                raise AssertionError(f"{command}: {error}") from error


def test_submitit_local_launcher_runs_a_two_job_sweep(tmp_path):
    out = cli("-m", "hydra/launcher=submitit_local", "scheme=euler,midpoint", "depth=6", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert sorted(r["config"]["scheme"]["name"] for r in results_under(tmp_path).values()) == ["euler", "midpoint"]


def test_readme_and_results_doc_are_the_committed_records():
    """The README's verdicts and docs/results.md are what the committed cpu records render to, and every row the
    cpu budget trains without a current result is named in docs/results.md as still to run."""
    index = RunIndex(REPRODUCED / "cpu", budget="cpu", allow_stale=True)
    names = BUDGETS["cpu"][0]
    assert readme_results((REPO / "README.md").read_text()) == verdict_summary(names, index).strip("\n")
    assert results_summary(names, index) in (REPO / "docs" / "results.md").read_text()
    current = {" ".join(r) for r, _ in trained_rows(names, "cpu")
               if any(not run["stale_modules"] for run in index.runs_for({"overrides": r}))}
    listed = set(re.findall(r"^- `(.+)`$", (REPO / "docs" / "results.md").read_text(), re.M))
    untrained = {" ".join(r) for r, _ in trained_rows(names, "cpu")} - current
    assert untrained <= listed, f"rows without a current result, not listed as still to run: {untrained - listed}"


def test_no_committed_record_ran_uncommitted_code():
    """A reader can check out the code of every committed record (issue 21: no cell shows `+dirty`)."""
    assert not [r["run_name"] for r in load_runs(REPRODUCED) if dirty_code(r)]


def test_collecting_refuses_runs_of_uncommitted_code_unless_told(tmp_path):
    fake_run(tmp_path / "runs", ["experiment=heunnet/sine", "model=lstm"], 0, 0.9, budget="cpu")
    fake_run(tmp_path / "runs", ["experiment=heunnet/sine", "model=lstm"], 1, 0.9, budget="cpu")
    dirty = tmp_path / "runs" / "run-1" / "result.json"
    record = json.loads(dirty.read_text())
    record["code"].update(dirty=True, dirty_paths=["src/odenets/core/blocks.py", "README.md"])
    dirty.write_text(json.dumps(record | {"run_name": "dirty"}))
    clean = tmp_path / "runs" / "run-0" / "result.json"
    clean.write_text(json.dumps(json.loads(clean.read_text()) | {"run_name": "clean"}))

    def collect(out: str, *extra: str) -> tuple[str, list[str]]:
        done = subprocess.run([sys.executable, "scripts/collect_results.py", "--runs", str(tmp_path / "runs"),
                               "--out", str(tmp_path / out), *extra], cwd=REPO, capture_output=True, text=True,
                              check=True)
        return done.stdout, sorted(p.name for p in (tmp_path / out).iterdir())

    said, written = collect("refused")
    assert "1 run(s) of uncommitted code under src/ or conf/ skipped" in said and written == ["clean.json"]
    assert collect("allowed", "--allow-dirty")[1] == ["clean.json", "dirty.json"]


def test_collecting_removes_the_stale_records_current_ones_supersede(tmp_path):
    for seed in (0, 1):
        fake_run(tmp_path / "old", ["experiment=heunnet/sine", "model=lstm"], seed, 0.9, budget="cpu")
    fake_run(tmp_path / "old", ["experiment=heunnet/sine", "model=gru"], 0, 0.9, budget="cpu")
    committed = tmp_path / "reproduced" / "cpu"
    committed.mkdir(parents=True)
    for run in ("run-0", "run-1", "run-2"):
        _make_stale(tmp_path / "old", run)
        (committed / f"{run}.json").write_text((tmp_path / "old" / run / "result.json").read_text())
    fake_run(tmp_path / "new", ["experiment=heunnet/sine", "model=lstm"], 0, 0.95, budget="cpu")
    new = tmp_path / "new" / "run-0" / "result.json"
    new.write_text(json.dumps(json.loads(new.read_text()) | {"run_name": "current", "finished": "2026"}))
    subprocess.run([sys.executable, "scripts/collect_results.py", "--runs", str(tmp_path / "new"), "--out",
                    str(committed)], cwd=REPO, check=True, capture_output=True)
    assert sorted(p.name for p in committed.iterdir()) == ["current.json", "run-2.json"]  # gru: nothing newer


def test_a_stale_record_from_before_a_new_option_is_superseded_by_its_overrides(tmp_path):
    """A config key added since a record ran changes its stored config's key, not the experiment its overrides
    name today; overrides that no longer compose keep the record."""
    sine_lstm = ["experiment=heunnet/sine", "model=lstm"]
    fake_run(tmp_path / "old", sine_lstm, 0, 0.9, budget="cpu")
    fake_run(tmp_path / "old", sine_lstm, 1, 0.9, budget="cpu")
    committed = tmp_path / "reproduced" / "cpu"
    committed.mkdir(parents=True)
    for run, overrides in (("run-0", sine_lstm), ("run-1", ["experiment=heunnet/sine", "model=no_such_model"])):
        _make_stale(tmp_path / "old", run)
        record = json.loads((tmp_path / "old" / run / "result.json").read_text())
        record["config"]["model"].popitem()  # an option the model gained since
        record["overrides"] = [*overrides, "budget=cpu", f"seed={run[-1]}"]
        (committed / f"{run}.json").write_text(json.dumps(record))
    fake_run(tmp_path / "new", sine_lstm, 0, 0.95, budget="cpu")
    new = tmp_path / "new" / "run-0" / "result.json"
    new.write_text(json.dumps(json.loads(new.read_text()) | {"run_name": "current", "finished": "2026"}))
    subprocess.run([sys.executable, "scripts/collect_results.py", "--runs", str(tmp_path / "new"), "--out",
                    str(committed)], cwd=REPO, check=True, capture_output=True)
    assert sorted(p.name for p in committed.iterdir()) == ["current.json", "run-1.json"]


def test_committed_records_are_read_from_a_relative_path_too(monkeypatch):
    monkeypatch.chdir(REPO)
    relative = load_runs(REPRODUCED.relative_to(REPO) / "cpu")
    assert relative and len(relative) == len(load_runs(REPRODUCED / "cpu"))


def test_readme_without_a_results_block_is_one_line_and_exit_2(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no results here\n")
    out = subprocess.run([sys.executable, "scripts/tables.py", "--budget", "cpu", "--no-memory", "--tables",
                          "heunnet_table1", "--out", str(tmp_path / "t"), "--report", str(tmp_path / "r"),
                          "--readme", str(readme)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "no results block" in out.stderr, out.stderr
    assert readme.read_text() == "# no results here\n"
