"""Stale records (`odenets.reporting.staleness`): the code a run depends on, bookkeeping declared by the modules
themselves, and revalidated records current while today's code equals one snapshot known to compute them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from odenets.provenance import module_digest
from odenets.reporting import staleness
from odenets.reporting.staleness import bookkeeping_modules, module_path, run_dependencies, snapshot, stale_modules
from odenets.results import REPRODUCED, commits

# the modules that were listed by hand as bookkeeping before they declared it (provenance.BOOKKEEPING)
BOOKKEEPING = {"odenets.train", "odenets.evaluate", "odenets.run.lifecycle", "odenets.run.validation",
               "odenets.run.lock", "odenets.run.preemption", "odenets.run.checkpoints", "odenets.results",
               "odenets.errors", "odenets.fileio", "odenets.provenance"}


def today(name: str) -> str:
    return module_digest(module_path(name))


def test_a_changed_module_makes_its_runs_stale():
    schemes = today("odenets.core.schemes")
    record = {"code": {"modules": {"odenets.core.blocks": "0" * 16, "odenets.core.schemes": schemes}}}
    assert stale_modules(record) == ["odenets.core.blocks"]
    assert stale_modules({}) == ["(no code digests recorded)"]
    assert stale_modules({"code": {"modules": {"odenets.core.gone": schemes}}}) == ["odenets.core.gone"]
    # how a run is started, checked and recorded does not change its numbers
    bookkeeping = {"odenets.run.lifecycle": "0" * 16, "odenets.run.validation": "1" * 16}
    assert stale_modules({"code": {"modules": bookkeeping}}) == []


@pytest.fixture(scope="module")
def run_modules() -> dict[str, str]:
    """The odenets modules a training process imports (a record's `code.modules`), from a fresh interpreter:
    this one holds whatever other tests imported (the diagnostics import the recurrent kernels directly)."""
    code = ("import json, odenets.run.training; from odenets.provenance import imported_modules; "
            "print(json.dumps({n: d for n, d in imported_modules().items() if n.startswith('odenets')}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("model, changed, stale", [
    ("horesnet", "odenets.core.fused_rnn", False),  # imported through the registry, never run
    ("horesnet", "odenets.models.recurrent", False),
    ("ode_rnn", "odenets.core.fused_rnn", True),
    ("lstm", "odenets.models.recurrent", True),
    ("horesnet", "odenets.core.blocks", True),
    ("densenet", "odenets.models.rkcnn", True),  # a family that another family builds on
    ("rkcnn", "odenets.models.densenet", False),
    ("horesnet", "odenets.data.vision", True),  # not a model: every run depends on it
])
def test_a_run_depends_on_its_own_model_family_only(model, changed, stale, run_modules):
    """Every run imports every model family (the registry does); a change to a family it did not build
    does not make it stale."""
    modules = run_modules
    assert {"odenets.core.fused_rnn", "odenets.models.horesnet", "odenets.models.rkcnn"} <= set(modules)
    record = {"config": {"model": {"name": model}}, "code": {"modules": {**modules, changed: "0" * 16}}}
    assert stale_modules(record) == ([changed] if stale else [])


def test_bookkeeping_modules_declare_it_and_the_set_is_the_one_listed_before():
    assert bookkeeping_modules() == BOOKKEEPING
    for name in BOOKKEEPING:
        assert "\nBOOKKEEPING = True  # " in module_path(name).read_text(), name


@pytest.mark.parametrize("source, declares", [
    ("BOOKKEEPING = True\n", True),
    ('"""Doc."""\nimport os\n\nBOOKKEEPING = True  # records runs\nX = 1\n', True),
    ("BOOKKEEPING = False\n", False),
    ("BOOKKEEPING = 1\n", False),  # the constant True only
    ("def f():\n    BOOKKEEPING = True\n", False),  # at the top level only
    ("if X:\n    BOOKKEEPING = True\n", False),
    ("# BOOKKEEPING = True\nX = 1\n", False),
    ("BOOKKEEPING_NOTE = True\n", False),
])
def test_the_declaration_is_read_from_the_syntax_tree(tmp_path, source, declares):
    path = tmp_path / "m.py"
    path.write_text(source)
    assert staleness.declares_bookkeeping(path) is declares


def _record(blocks: str, schemes: str, *revalidated: dict) -> dict:
    record = {"config": {"model": {"name": "horesnet"}},
              "code": {"commit": "a" * 40, "modules": {"odenets.core.blocks": blocks, "odenets.core.schemes": schemes}}}
    return {**record, "revalidated": list(revalidated)} if revalidated else record


def _entry(commit: str, **modules: str) -> dict:
    return {"commit": commit, "date": "2026-12-08T00:00:00+00:00", "seed": 0, "epochs": 3, "whole": False,
            "modules": {f"odenets.core.{m}": d for m, d in modules.items()}}


def test_a_revalidated_record_is_current_while_the_code_equals_one_snapshot():
    blocks, schemes, old = today("odenets.core.blocks"), today("odenets.core.schemes"), "0" * 16
    assert stale_modules(_record(old, schemes)) == ["odenets.core.blocks"]
    assert stale_modules(_record(old, schemes, _entry("b" * 40, blocks=blocks, schemes=schemes))) == []
    # an older revalidation counts as well as the latest: each is code that computes the record's numbers
    newer = _entry("c" * 40, blocks="1" * 16, schemes=schemes)
    assert stale_modules(_record(old, schemes, _entry("b" * 40, blocks=blocks, schemes=schemes), newer)) == []
    # what differs is named against the latest snapshot
    assert stale_modules(_record(old, schemes, newer)) == ["odenets.core.blocks"]
    assert stale_modules(_record(old, schemes, _entry("b" * 40, blocks=blocks, schemes=old))) == \
        ["odenets.core.schemes"]


def test_two_snapshots_are_never_mixed():
    """Run with (blocks₁, schemes₁), revalidated at (blocks₂, schemes₂): today's (blocks₂, schemes₁) is a
    combination no run computed, so it is stale though each module matches one snapshot."""
    blocks, schemes = today("odenets.core.blocks"), today("odenets.core.schemes")
    record = _record("0" * 16, schemes, _entry("b" * 40, blocks=blocks, schemes="1" * 16))
    assert stale_modules(record) == ["odenets.core.schemes"]


def test_a_malformed_revalidation_proves_nothing():
    schemes = today("odenets.core.schemes")
    for entries in ("yes", ["yes"], [{"commit": "b" * 40}], [{"modules": {}}], [{"modules": "all"}]):
        record = {**_record("0" * 16, schemes), "revalidated": entries}
        assert stale_modules(record) == ["odenets.core.blocks"], entries
        assert snapshot(record) == {"odenets.core.blocks": "0" * 16, "odenets.core.schemes": schemes}


def test_a_snapshot_is_the_latest_verified_code_without_bookkeeping():
    blocks, schemes = today("odenets.core.blocks"), today("odenets.core.schemes")
    record = _record("0" * 16, schemes)
    record["code"]["modules"]["odenets.results"] = "2" * 16
    assert snapshot(record) == {"odenets.core.blocks": "0" * 16, "odenets.core.schemes": schemes}
    record["revalidated"] = [_entry("b" * 40, blocks=blocks, schemes=schemes)]
    assert snapshot(record) == {"odenets.core.blocks": blocks, "odenets.core.schemes": schemes}


def test_table_provenance_says_where_records_were_revalidated():
    schemes = today("odenets.core.schemes")
    plain = _record("0" * 16, schemes)
    assert commits([plain]) == "commit aaaaaaa"
    again = _record("0" * 16, schemes, _entry("b" * 40, blocks="1" * 16), _entry("c" * 40, blocks="1" * 16))
    assert commits([plain, again]) == "commit aaaaaaa, revalidated at ccccccc"
    assert commits([again], label=False) == "aaaaaaa, revalidated at ccccccc"
    assert commits([{**plain, "revalidated": [{"commit": "d" * 40}]}]) == "commit aaaaaaa"  # no modules: none


def test_the_committed_records_are_judged_as_before_the_move():
    """Judging moved out of provenance.py unchanged: on the committed records (seed 0 of every experiment), the
    rule of the hand-kept list (the record's own digests of what it depends on, less bookkeeping) and
    `stale_modules` agree."""
    records = [json.loads(p.read_text()) for p in sorted(REPRODUCED.rglob("*-s0-*.json"))]
    assert len(records) >= 60
    for record in records:
        modules, depends = record["code"]["modules"], run_dependencies(record)
        before = [m for m, d in modules.items() if m in depends and m not in BOOKKEEPING and today(m) != d]
        if not record.get("revalidated"):
            assert stale_modules(record) == before, record["run_name"]
