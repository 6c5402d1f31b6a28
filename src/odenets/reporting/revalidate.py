"""Revalidation (`make revalidate BUDGET=cpu`, scripts/revalidate.py): make stale committed records current
again without rerunning them all. For every experiment (a table row: the overrides without the seed) whose
records are stale, one seed, the cheapest, is rerun from scratch on today's code, and every value the rerun logs
is compared with that seed's record by float equality. A refactor computes the same floats in the same order,
so it passes; any change of what is computed fails, at the first value it moves.

**Which epochs** (`choose_epochs`). The whole run where its record took at most `WHOLE_BELOW_S` (2 minutes,
a few minutes on a slower machine): there a partial rerun saves little, and a whole one also checks the last
epochs, the final and best metrics and the confusion matrix. On the cpu budget that is 30 of the 68 experiments
(the sine, RKCNN, one HO-ResNet of depth 10 and the LSTM on the authors' MNIST), for 2.1 h of training in all
(one rerun each), against 2.0 h with every run cut short and 20.7 h for every record. Otherwise the first K
epochs
(`trainer.max_epochs=K`: the run stops there, its schedule unmoved, as the milestones come from `epochs`), K the
smallest that covers what the run's code does at least once:
- an epoch boundary (K >= 2): the next epoch's data order and augmentation streams, the sampler's epoch, the
  history's accounting;
- the learning-rate schedule's first change: an entry's `lr` is the rate after its epoch's scheduler step, so
  when epoch c first shows another rate, epoch c + 1 is the first trained at it (K >= c + 1);
- an evaluation and a checkpoint write: every epoch ends with one of each (the rerun must leave `last.ckpt`).
On the cpu budget: 3 of 5 epochs for the 9 slow HO-ResNets (milestones at 2 and 4), 11 of 20 for the two
20-epoch ones (at 10 and 15), 2 for the authors' HeunNet cell (sine, MNIST, ECG) and the ODE-RNNs on the ECG (no
schedule). An early stop that changed anything would show as a difference, so the choice fails closed.

**What is compared** (`first_difference`), float equality (NaN equal to NaN): `params`, `data.sha256`, every
value of history entries 1..K except `time/*` (`epoch`, `step` and `lr` included; a key on one side only is a
difference) and their number; for a whole run also the status, `diverged_at_step` and `metrics` (final, best,
confusion matrix). The first difference is named with its epoch.

**On an exact match** every record of the experiment that ran the code the rerun seed's record ran
(`staleness.snapshot`) gains a `revalidated` entry: the commit and date, the seed and epochs rerun, whether it
was whole, the digests of the modules the rerun depends on (bookkeeping left out), the `method`, the
`reference` commit (None for "record"), this machine's `cpu_kind` and `machine_max_abs_diff` (0.0 for
"record"). The staleness check then
accepts it while today's code equals that snapshot (`odenets.reporting.staleness`) and the tables' provenance
says "revalidated at <commit>" (`odenets.results.commits`). On a difference, or a failed rerun, the records stay
stale. Revalidating needs a clean tree (no uncommitted change under src/ or conf/ but the records themselves): an
entry names the commit whose code it ran.

**Whose floats** (`plan`). Float results of one code match exactly only on one kind of CPU
(`provenance.cpu_kind`: vendor, family, model, kernel instruction sets): BLAS and oneDNN round by instruction
set. Where a record of the experiment was made on this machine's kind, its seed is rerun and compared with it
(`method` "record"). Otherwise (records of another kind, or of no recorded kind: made before it was recorded)
the seed is rerun twice here (`method` "reference"): once on the code its record was made with (its
`code.commit`, exported with `git archive` into `outputs/revalidate/<budget>/code-<commit>/`, refused unless
that code's module digests equal the record's for every module the run depends on) and once on today's code,
and the two must be identical by the same comparison: the change of code then alters no number on this
machine, and the record's numbers are what that code computes on its own machine. The reference rerun must
also be the record's run but for rounding (the same params, data, evaluations, keys, epochs and steps); the
largest absolute difference of its numbers from the record's (this machine's rounding) is reported and kept.
Two reruns double the first revalidation's cost (4.2 h of training for the whole cpu budget, whose records
predate `cpu_kind`); kept reference reruns are not made again.

Reruns are kept in `outputs/revalidate/<budget>/<run name>-<epochs>/` (their checkpoints serve the stability
diagnostics), reference reruns in `<run name>-<epochs>-ref-<commit>/`; one whose result.json is complete, of the
same command and of the code it is meant to run is reused, so an interrupted revalidation resumes and a
reference rerun is made once. The report (`Report`) goes to `outputs/revalidate/<budget>/report.json`.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import subprocess
import tarfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

from odenets.errors import ConfigError
from odenets.fileio import atomic_open
from odenets.provenance import PACKAGE_DIR, code_version, cpu_kind, dirty_code, module_digest
from odenets.reporting.collect import COLLECTED, key_today, read_record, write_record
from odenets.reporting.rerun import Rerun, rerun, rerun_overrides
from odenets.reporting.staleness import is_bookkeeping, module_path, run_dependencies, snapshot, stale_modules
from odenets.results import REPRODUCED, RESULT_FILE, get, now, read_result
from odenets.run.checkpoints import CHECKPOINTS, LAST

WHOLE_BELOW_S = 120.0  # a record that took at most this long is rerun whole (module docstring)
OUT = Path("outputs") / "revalidate"
REPORT = "report.json"
ROOT = PACKAGE_DIR.parents[1]  # the checkout
RECORDS = REPRODUCED.relative_to(ROOT).as_posix() + "/"  # not code: a dirty record is no obstacle
CODE = ("src", "conf", "train.py", "pyproject.toml")  # what a reference checkout holds: what a run reads


# --------------------------------------------------------------------------- what to rerun
@dataclass
class Experiment:
    """The committed records of one experiment (a row), with how many of them are stale."""
    key: str
    label: str  # its overrides without the seed
    records: list[tuple[Path, dict]]
    stale: int


def _without_seed(overrides: Sequence[str]) -> tuple[str, ...]:
    return tuple(o for o in overrides if not o.startswith("seed="))


def experiments(records_dir: str | Path, budget: str) -> list[Experiment]:
    """The finished records of `budget` under `records_dir`, by experiment (`collect.key_today`: the experiment
    their overrides name today), in the order of their labels."""
    by_overrides: dict[tuple[str, ...], list[tuple[Path, dict]]] = defaultdict(list)
    for path in sorted(Path(records_dir).glob("*.json")):
        record = read_record(path)
        if get(record, "config.budget.name") == budget and record.get("status") in COLLECTED:
            by_overrides[_without_seed(record.get("overrides") or [])].append((path, record))
    grouped: dict[str, list[tuple[Path, dict]]] = defaultdict(list)
    for records in by_overrides.values():  # the key is the seed's to none: composed once per set of overrides
        grouped[key_today(records[0][1])] += records
    found = [Experiment(key, " ".join(_without_seed(records[0][1]["overrides"])), records,
                        sum(bool(stale_modules(r)) for _, r in records)) for key, records in grouped.items()]
    return sorted(found, key=lambda e: e.label)


def trained_epochs(record: dict) -> int:
    """How many epochs the record's run trained (its last evaluation's epoch, rounded up)."""
    return math.ceil(record["history"][-1]["epoch"]) if record.get("history") else 0


def choose_epochs(record: dict, whole_below_s: float = WHOLE_BELOW_S) -> tuple[int | None, str]:
    """The epochs to rerun `record` for (None: the whole run) and why (module docstring)."""
    total, wall = trained_epochs(record), float(record.get("wall_time_s") or 0)
    if record.get("status") != "completed":
        return None, f"whole: the run {record.get('status')}, which only a whole run reproduces"
    if wall <= whole_below_s:
        return None, f"whole: {wall:.0f} s <= {whole_below_s:.0f} s"
    history = record["history"]
    changed = next((e for e in history if e.get("lr") != history[0].get("lr")), None)
    epochs, why = 2, "2 epochs: an epoch boundary (the learning rate never changes before)"
    if changed is not None and math.ceil(changed["epoch"]) + 1 > epochs:
        epochs = math.ceil(changed["epoch"]) + 1
        why = (f"{epochs} epochs: the learning rate changes after epoch {changed['epoch']} "
               f"({history[0].get('lr'):g} -> {changed['lr']:g}), epoch {epochs} trains at it")
    if epochs >= total:
        return None, f"whole: {why.split(':', 1)[1].strip()}, which is all {total} epochs"
    return epochs, f"{why} (of {total})"


@dataclass
class Planned:
    """One experiment's rerun: the seed's record, its epochs (None: whole) and why, and its estimated cost."""
    experiment: Experiment
    path: Path
    record: dict
    epochs: int | None
    why: str
    method: str = "record"  # or "reference" (module docstring)

    @property
    def whole(self) -> bool:
        return self.epochs is None

    @property
    def reference(self) -> str | None:
        """The commit whose code the reference rerun runs (None for the "record" method)."""
        return get(self.record, "code.commit") if self.method == "reference" else None

    @property
    def estimate_s(self) -> float:
        """The record's wall time, in proportion of the epochs rerun; twice for a reference (at most: a kept
        reference rerun is not made again)."""
        wall = float(self.record.get("wall_time_s") or 0)
        once = wall if self.whole else wall * self.epochs / trained_epochs(self.record)
        return once * (2 if self.method == "reference" else 1)

    @property
    def folder(self) -> str:
        return f"{self.record['run_name']}-{'all' if self.whole else f'e{self.epochs}'}"

    @property
    def reference_folder(self) -> str:
        return f"{self.folder}-ref-{str(self.reference)[:7]}"

    def extra(self) -> list[str]:
        return [] if self.whole else [f"trainer.max_epochs={self.epochs}"]


def plan(found: Iterable[Experiment], everything: bool = False, whole_below_s: float = WHOLE_BELOW_S,
         kind: dict | None = None) -> list[Planned]:
    """A rerun for every experiment with a stale record (every experiment with `everything`): its cheapest seed
    among the records made on this CPU kind (`kind`, default this machine's; method "record"), else its
    cheapest (method "reference")."""
    kind = cpu_kind() if kind is None else kind
    planned = []
    for experiment in found:
        if experiment.stale or everything:
            here = [pr for pr in experiment.records if get(pr[1], "device.cpu_kind") == kind]
            path, record = min(here or experiment.records,
                               key=lambda pr: (float(pr[1].get("wall_time_s") or math.inf), pr[1]["run_name"]))
            planned.append(Planned(experiment, path, record, *choose_epochs(record, whole_below_s),
                                   method="record" if here else "reference"))
    return planned


# --------------------------------------------------------------------------- comparing
def _same(old, new) -> bool:
    if isinstance(old, float) and isinstance(new, float) and math.isnan(old) and math.isnan(new):
        return True
    if isinstance(old, dict) and isinstance(new, dict):
        return old.keys() == new.keys() and all(_same(old[k], new[k]) for k in old)
    if isinstance(old, list) and isinstance(new, list):
        return len(old) == len(new) and all(map(_same, old, new))
    return old == new


_ABSENT = "(not logged)"


def _first(old: dict, new: dict, prefix: str = "", skip: tuple[str, ...] = ()) -> tuple[str, object, object] | None:
    """The first key (dotted, the record's order first) whose values differ, with both values."""
    for key in [*old, *(k for k in new if k not in old)]:
        if key.startswith(skip):
            continue
        a, b = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if isinstance(a, dict) and isinstance(b, dict):
            found = _first(a, b, f"{prefix}{key}.", skip)
            if found:
                return found
        elif not _same(a, b):
            return f"{prefix}{key}", a, b
    return None


def first_difference(record: dict, again: dict, epochs: int | None) -> str | None:
    """None when `again` (a rerun of `record` for `epochs`, None: whole) logged exactly what the record holds,
    else the first value that differs (module docstring)."""
    said = "{} recorded, {} rerun"
    for key in ("params", "data.sha256", *(("status", "diverged_at_step") if epochs is None else ())):
        if not _same(get(record, key), get(again, key)):
            return f"{key}: " + said.format(repr(get(record, key)), repr(get(again, key)))
    old = [e for e in record.get("history") or [] if epochs is None or e.get("epoch", math.inf) <= epochs]
    new = again.get("history") or []
    for a, b in zip(old, new, strict=False):  # then their numbers
        found = _first(a, b, skip=("time/",))
        if found:
            key, x, y = found
            return f"{key} at epoch {a.get('epoch')}: " + said.format(repr(x), repr(y))
    if len(old) != len(new):
        upto = "" if epochs is None else f" up to epoch {epochs}"
        return f"evaluations{upto}: " + said.format(len(old), len(new))
    if epochs is None:
        found = _first({"metrics": record.get("metrics") or {}}, {"metrics": again.get("metrics") or {}})
        if found:
            return f"{found[0]}: " + said.format(repr(found[1]), repr(found[2]))
    return None


_EXACT = ("epoch", "step")  # counted, not computed in floats: equal on every machine


def _apart(old, new, where: str) -> tuple[str | None, float]:
    """(None, the largest absolute difference of their numbers) when `old` and `new` differ in numbers only,
    else (what differs otherwise, 0)."""
    number = (int, float)
    if isinstance(old, number) and isinstance(new, number) and not isinstance(old, bool) \
            and not isinstance(new, bool) and where.rsplit(".", 1)[-1] not in _EXACT:
        if old == new or (math.isnan(old) and math.isnan(new)):
            return None, 0.0
        apart = abs(new - old)
        return None, math.inf if math.isnan(apart) else apart  # NaN against a number: as far apart as can be
    if isinstance(old, dict) and isinstance(new, dict):
        keys = [k for k in old if not k.startswith("time/")], [k for k in new if not k.startswith("time/")]
        if sorted(keys[0]) != sorted(keys[1]):
            return f"{where or 'values'}: keys {sorted(keys[0])} recorded, {sorted(keys[1])} rerun", 0.0
        found = [_apart(old[k], new[k], f"{where}.{k}" if where else k) for k in keys[0]]
    elif isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return f"{where}: {len(old)} values recorded, {len(new)} rerun", 0.0
        found = [_apart(a, b, f"{where}[{i}]") for i, (a, b) in enumerate(zip(old, new, strict=True))]
    else:
        return (None, 0.0) if _same(old, new) else (f"{where}: {old!r} recorded, {new!r} rerun", 0.0)
    problem = next((p for p, _ in found if p), None)
    return problem, 0.0 if problem else max((d for _, d in found), default=0.0)


def machine_difference(record: dict, again: dict, epochs: int | None) -> tuple[str | None, float]:
    """How a rerun of `record` on its own code but another machine differs from it: (None, the largest absolute
    difference of the numbers it logged; `time/*` aside) when only by rounding, else (what else differs, 0).
    Params, data and, for a whole run, the status are compared exactly."""
    for key in ("params", "data.sha256", *(("status",) if epochs is None else ())):
        if not _same(get(record, key), get(again, key)):
            return f"{key}: {get(record, key)!r} recorded, {get(again, key)!r} rerun", 0.0
    old = [e for e in record.get("history") or [] if epochs is None or e.get("epoch", math.inf) <= epochs]
    compared = {"history": old, **({"metrics": record.get("metrics") or {}} if epochs is None else {})}
    rerun_ = {"history": again.get("history") or [], **({"metrics": again.get("metrics") or {}} if epochs is None
                                                         else {})}
    return _apart(compared, rerun_, "")


# --------------------------------------------------------------------------- running
def dirty_tree() -> list[str]:
    """What stops a revalidation here: uncommitted changes under src/ or conf/ other than the records, or no git."""
    code = code_version()
    if code["commit"] is None:
        return ["(not a git checkout)"]
    return [p for p in dirty_code({"code": code}) if not p.startswith(RECORDS)]


def _reusable(result: dict | None, overrides: list[str], ran: Callable[[dict], bool]) -> bool:
    """A kept rerun that need not run again: complete, of the same command, of the code it is meant to run
    (`ran`)."""
    if result is None or result.get("status") not in COLLECTED:
        return False
    where = ("paths.", "hydra")
    same = [o for o in result.get("overrides") or [] if not o.startswith(where)] == \
        [o for o in overrides if not o.startswith(where)]
    return same and ran(result)


def _run_kept(planned: Planned, folder: Path, data_dir: str | Path | None, ran: Callable[[dict], bool],
              code: Path | None = None) -> tuple[Rerun, bool]:
    """Rerun `planned` into `folder` (on the checkout `code`, None: today's), or reuse the kept rerun there:
    (the rerun, reused)."""
    extra = [*planned.extra(), "force=true"]
    kept = [read_result(p.parent) for p in (folder / "runs").glob(f"*/{RESULT_FILE}")]
    if len(kept) == 1 and _reusable(kept[0], rerun_overrides(planned.record, folder, extra, data_dir), ran):
        return Rerun(kept[0], None, 0.0, 0.0), True
    shutil.rmtree(folder / "runs", ignore_errors=True)  # a rerun of other code, or unfinished: from scratch
    done = rerun(planned.record, folder, extra, data_dir, code)
    if done.result is not None and not (folder / "runs" / done.result["run_name"] / CHECKPOINTS / LAST).is_file():
        return Rerun(None, f"the rerun wrote no {CHECKPOINTS}/{LAST}", done.wall_s, done.cpu_s), False
    return done, False


def _depends(record: dict) -> dict[str, str]:
    """The record's digests of the modules its numbers depend on (bookkeeping left out)."""
    modules = get(record, "code.modules") or {}
    return {m: modules[m] for m in sorted(run_dependencies(record) & set(modules)) if not is_bookkeeping(m)}


_EXPORTING = threading.Lock()


def reference_code(record: dict, out: Path) -> Path:
    """The code `record`'s run was made with: its commit's src/, conf/, train.py and pyproject.toml exported
    (`git archive`, kept) into `<out>/code-<commit>/`. `ConfigError` (one line) where its run had no clean
    commit, the commit is not in this repository, or that code is not what the record says its run ran."""
    commit = str(get(record, "code.commit") or "")
    if not re.fullmatch(r"[0-9a-f]{40}", commit) or dirty_code(record):
        raise ConfigError(f"{record.get('run_name')} was not made at a clean commit (commit {commit or 'none'}, "
                          f"uncommitted {dirty_code(record) or 'none'}): no code to rerun it on")
    root, done = out / f"code-{commit}", out / f"code-{commit}" / ".exported"
    with _EXPORTING:
        if not done.is_file():
            shutil.rmtree(root, ignore_errors=True)
            cannot = f"cannot export commit {commit[:7]} of {ROOT} (the code of {record.get('run_name')})"
            try:
                tree = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", commit, *CODE],
                                      capture_output=True, timeout=300)
                if tree.returncode != 0:
                    said = tree.stderr.decode(errors="replace").strip().splitlines() or ["?"]
                    raise ConfigError(f"{cannot}: {said[-1]}")
                with tarfile.open(fileobj=io.BytesIO(tree.stdout)) as tar:
                    tar.extractall(root, filter="data")
                done.write_text(commit + "\n")
            except (OSError, tarfile.TarError, subprocess.TimeoutExpired) as e:
                raise ConfigError(f"{cannot}: {e}") from e
    package = root / "src" / "odenets"
    differ = [m for m, digest in _depends(record).items() if module_digest(module_path(m, package)) != digest]
    if differ:
        raise ConfigError(f"the code at commit {commit[:7]} is not what {record.get('run_name')} ran: "
                          f"{', '.join(differ[:5])}{', ...' if len(differ) > 5 else ''} differ(s) from its digests")
    return root


@dataclass
class Reruns:
    """An experiment's rerun on today's code and, for the reference method, on its record's."""
    today: Rerun
    reused: bool
    reference: Rerun | None = None
    reference_reused: bool = False


def run_one(planned: Planned, out: Path, data_dir: str | Path | None) -> Reruns:
    """Rerun `planned` (module docstring): the reference first, where its method wants one."""
    data_dir = data_dir if data_dir is not None else _default_data_dir()
    reference, reference_reused = None, False
    if planned.method == "reference":
        try:
            code = reference_code(planned.record, out)
        except ConfigError as e:
            return Reruns(Rerun(None, str(e), 0.0, 0.0), False)
        own = _depends(planned.record)
        reference, reference_reused = _run_kept(
            planned, out / planned.reference_folder, data_dir,
            lambda r: {m: (get(r, "code.modules") or {}).get(m) for m in own} == own, code)
        if reference.result is None:
            return Reruns(Rerun(None, f"the reference rerun: {reference.failure}", 0.0, 0.0), False, reference,
                          reference_reused)
    today, reused = _run_kept(planned, out / planned.folder, data_dir, lambda r: not stale_modules(r))
    return Reruns(today, reused, reference, reference_reused)


def _default_data_dir() -> str:
    """Where this checkout's runs find their data (`DATA_DIR`, else `<checkout>/data`), named explicitly, so that
    a reference checkout finds the same."""
    return os.environ.get("DATA_DIR") or str(ROOT / "data")


@dataclass
class Outcome:
    """What one experiment's revalidation found."""
    label: str
    seed: int | None
    run_name: str
    epochs: int | None
    whole: bool
    why: str
    estimate_s: float
    verdict: str = "planned"  # revalidated | stale | failed | planned (a dry run)
    detail: str = ""
    wall_s: float = 0.0
    cpu_s: float = 0.0
    method: str = "record"
    reference: str | None = None
    machine_max_abs_diff: float | None = None
    reused: bool = False
    records: int = 0
    updated: int = 0

    def line(self) -> str:
        epochs = "whole" if self.whole else f"{self.epochs} epochs"
        how = "" if self.method == "record" else f", against a rerun at {str(self.reference)[:7]}"
        cost = f"~{self.estimate_s:.0f} s" if self.verdict == "planned" else \
            "reused" if self.reused else f"{self.wall_s:.0f} s, CPU {self.cpu_s:.0f} s"
        return (f"{self.verdict:<11} {self.label} (seed {self.seed}, {epochs}{how}, {cost})"
                + (f": {self.detail}" if self.detail else ""))


def _outcome(planned: Planned) -> Outcome:
    return Outcome(planned.experiment.label, get(planned.record, "config.seed"), planned.record["run_name"],
                   planned.epochs, planned.whole, planned.why, round(planned.estimate_s, 1),
                   method=planned.method, reference=planned.reference, records=len(planned.experiment.records))


def _undated(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if k != "date"}


def judge(planned: Planned, reruns: Reruns, commit: str, records_dir: Path, outcome: Outcome) -> None:
    """Fill `outcome` from the reruns; on an exact match (with the record, or with the reference rerun), append a
    `revalidated` entry to every record of the experiment that ran the seed's code, and write them
    (`collect.write_record`)."""
    done, reference = reruns.today, reruns.reference
    spent = [r for r in (done, reference) if r is not None]
    outcome.wall_s, outcome.cpu_s = (round(sum(r.wall_s for r in spent), 1), round(sum(r.cpu_s for r in spent), 1))
    outcome.reused = reruns.reused and (reference is None or reruns.reference_reused)
    result = done.result
    if result is None:
        outcome.verdict, outcome.detail = "failed", done.failure or "no result"
        return
    machine = 0.0
    if reference is not None:
        apart, machine = machine_difference(planned.record, reference.result, planned.epochs)
        if apart:
            outcome.verdict = "failed"
            outcome.detail = f"the reference rerun at {str(planned.reference)[:7]} is not the record's run: {apart}"
            return
        outcome.machine_max_abs_diff = machine
    differs = first_difference(planned.record if reference is None else reference.result, result, planned.epochs)
    if differs and reference is not None:
        differs = f"against the reference rerun at {str(planned.reference)[:7]}, " + \
            differs.replace(" recorded, ", " reference, ")
    if differs:
        outcome.verdict, outcome.detail = "stale", differs
        return
    ran = snapshot(planned.record)
    same = [(path, r) for path, r in planned.experiment.records if snapshot(r) == ran]
    entry = {"commit": commit, "date": now(), "seed": get(planned.record, "config.seed"),
             "epochs": planned.epochs or trained_epochs(planned.record), "whole": planned.whole,
             "modules": snapshot(result), "method": planned.method, "reference": planned.reference,
             "cpu_kind": get(result, "device.cpu_kind"), "machine_max_abs_diff": machine}
    for _, record in same:
        entries = record.get("revalidated") or []
        if not entries or _undated(entries[-1]) != _undated(entry):  # a revalidation repeated adds nothing
            record["revalidated"] = [*entries, entry]
            write_record(records_dir, record)
    outcome.verdict, outcome.updated = "revalidated", len(same)
    others = len(planned.experiment.records) - len(same)
    outcome.detail = f"{len(same)} record(s) current" + (
        f"; {others} ran other code than seed {entry['seed']} and stay as they were" if others else "") + (
        f"; this machine's rounding: {machine:.3g} at most" if reference is not None else "")


@dataclass
class Report:
    """A revalidation's plan or results, per experiment and in total."""
    budget: str
    commit: str | None
    jobs: int
    experiments: int
    dry_run: bool
    outcomes: list[Outcome] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return all(o.verdict in ("revalidated", "planned") for o in self.outcomes)

    def totals(self) -> dict:
        count = defaultdict(int)
        for o in self.outcomes:
            count[o.verdict] += 1
        return {"experiments": self.experiments, "rerun": len(self.outcomes), **count,
                "estimate_s": round(sum(o.estimate_s for o in self.outcomes), 1),
                "rerun_s": round(sum(o.wall_s for o in self.outcomes), 1),
                "cpu_s": round(sum(o.cpu_s for o in self.outcomes), 1), "wall_s": round(self.wall_s, 1)}

    def as_dict(self) -> dict:
        return {"budget": self.budget, "commit": self.commit, "jobs": self.jobs, "dry_run": self.dry_run,
                "totals": self.totals(),
                "experiments": [asdict(o) for o in self.outcomes]}

    def summary(self) -> str:
        t = self.totals()
        est = f"estimated {t['estimate_s'] / 3600:.2f} h of training, ~{t['estimate_s'] / 3600 / self.jobs:.2f} h " \
              f"as {self.jobs} stream(s)"
        if self.dry_run:
            return f"{t['rerun']} of {t['experiments']} experiments to rerun: {est}"
        said = ", ".join(f"{t[v]} {v}" for v in ("revalidated", "stale", "failed") if t.get(v))
        return (f"{t['rerun']} of {t['experiments']} experiments rerun: {said or 'none'}; "
                f"{t['cpu_s'] / 3600:.2f} h of CPU time in {t['wall_s'] / 3600:.2f} h ({est})")


def revalidate(budget: str, records_dir: str | Path | None = None, out: str | Path | None = None, jobs: int = 1,
               data_dir: str | Path | None = None, everything: bool = False, allow_dirty: bool = False,
               whole_below_s: float = WHOLE_BELOW_S, dry_run: bool = False,
               say: Callable[[str], object] = print) -> Report:
    """Revalidate `budget`'s stale records (module docstring); `say` hears one line per experiment as it ends.
    The report is written to `<out>/report.json` unless `dry_run`. A dirty tree is bad input (`ConfigError`)."""
    records_dir = Path(records_dir) if records_dir else REPRODUCED / budget
    out = Path(out) if out else OUT / budget
    if not records_dir.is_dir():
        raise ConfigError(f"no records of budget {budget} at {records_dir}")
    dirty = [] if dry_run or allow_dirty else dirty_tree()
    if dirty:
        raise ConfigError(f"uncommitted changes under src/ or conf/ ({', '.join(dirty[:5])}"
                          f"{', ...' if len(dirty) > 5 else ''}): commit them first, as a revalidation names the "
                          "commit whose code it ran")
    found = experiments(records_dir, budget)
    planned = plan(found, everything, whole_below_s)
    report = Report(budget, code_version()["commit"], jobs, len(found), dry_run, [_outcome(p) for p in planned])
    if dry_run:
        for outcome, p in zip(report.outcomes, planned, strict=True):
            say(f"{outcome.line()}; {p.why}")
        return report
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        running = {pool.submit(run_one, p, out, data_dir): (p, o)
                   for p, o in zip(planned, report.outcomes, strict=True)}
        for future in as_completed(running):
            p, outcome = running[future]
            judge(p, future.result(), report.commit, records_dir, outcome)
            say(outcome.line())
    report.wall_s = time.perf_counter() - start
    with atomic_open(out / REPORT, what="report") as f:
        f.write(json.dumps(report.as_dict(), indent=1) + "\n")
    return report
