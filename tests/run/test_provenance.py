"""Results you can trust (issue 11): provenance in result.json (stale runs: tests/reporting/test_staleness.py),
independent seed streams, keys that mean something, the learned-alpha stage count, and an installable package."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from helpers import REPO, cli, results_under
from odenets.config import CONF_DIR, compose, fingerprint, unused_keys
from odenets.data.base import EpochSampler
from odenets.errors import ConfigError
from odenets.models import create_model, list_models
from odenets.models.horesnet import HOResNet
from odenets.provenance import module_digest
from odenets.reporting.staleness import stale_modules
from odenets.results import REPRODUCED
from odenets.seeding import derive_seed


# --------------------------------------------------------------------------- provenance
def test_result_json_says_where_its_numbers_come_from(run_inprocess):
    record, _ = run_inprocess([])
    code = record["code"]
    assert len(code["commit"]) == 40 and isinstance(code["dirty"], bool)
    assert (code["diff_sha256"] is not None) == code["dirty"]
    assert {"odenets.core.blocks", "odenets.models.horesnet", "odenets.run.training"} <= set(code["modules"])
    libraries = {"torch", "torchvision", "lightning", "hydra-core", "torchdiffeq", "wfdb", "numpy"}
    assert libraries <= set(record["packages"])
    installed = record["environment"]["distributions"]  # every distribution, and a digest of the list
    assert installed == sorted(installed) and {f"{n}=={record['packages'][n]}" for n in libraries} <= set(installed)
    assert record["environment"]["sha256"] == hashlib.sha256("\n".join(installed).encode()).hexdigest()
    assert record["device"]["cpu"] and record["device"]["cpu_cores"] >= 1
    data = record["data"]
    assert data["dataset"] == "digits" and (data["train_samples"], data["test_samples"]) == (64, 32)
    assert len(data["sha256"]) == 16
    assert "logger=none" in record["overrides"] and stale_modules(record) == []


def test_a_module_digest_is_of_its_code(tmp_path):
    module = tmp_path / "m.py"
    module.write_text('"""Doc."""\n\nX = 1  # a comment\n')
    before = module_digest(module)
    module.write_text('"""Another docstring."""\n\nX = 1  # another comment\n')
    os.utime(module, ns=(1, 1))
    assert module_digest(module) == before  # docstrings and comments are not code
    module.write_text('"""Doc."""\n\nX = 2\n')
    assert module_digest(module) != before  # what makes runs stale: tests/reporting/test_staleness.py


def test_a_module_digest_covers_its_cpp_source(tmp_path):
    module, native = tmp_path / "k.py", tmp_path / "k.cpp"
    module.write_text("X = 1\n")
    alone = module_digest(module)
    native.write_text("int f() { return 1; }  // one\n")
    with_cpp = module_digest(module)
    assert with_cpp != alone
    native.write_text("int f() { return 1; }  // another comment\n")
    os.utime(native, ns=(2, 2))
    assert module_digest(module) == with_cpp  # comments are not code
    native.write_text("int f() { return 2; }\n")
    os.utime(native, ns=(3, 3))
    assert module_digest(module) != with_cpp


def test_a_cpp_digest_ignores_indentation_and_comments(tmp_path):
    """Re-indenting (clang-format), re-wrapping or commenting the C++ source leaves the module's digest as it
    was; changing a token, or a string's contents, changes it."""
    module, native = tmp_path / "k.py", tmp_path / "k.cpp"
    module.write_text("X = 1\n")

    def digest(cpp: str, stamp: int) -> str:
        native.write_text(cpp)
        os.utime(native, ns=(stamp, stamp))
        return module_digest(module)

    original = digest('int f(int a, int b) {\n  return a - -b;  // a + b\n}\nconst char* s = "x  // y";\n', 1)
    relaid = digest('/* f */\nint f(int a,\n      int b)\n{\n    return a-\n        -b; /* a + b,\n   spelt out */'
                    '\n}\nconst char *s = "x  // y";\n', 2)
    assert relaid == original
    changed = ['int f(int a, int b) { return a - b; }\nconst char* s = "x  // y";\n',  # one token fewer
               'int f(int a, int b) { return a--b; }\nconst char* s = "x  // y";\n',  # tokens run together
               'int f(int a, int c) { return a - -b; }\nconst char* s = "x  // y";\n',
               'int f(int a, int b) { return a - -b; }\nconst char* s = "x // y";\n']  # inside a string
    assert all(digest(cpp, 3 + i) != original for i, cpp in enumerate(changed))

    source = REPO / "src" / "odenets" / "core" / "fused_rnn.cpp"  # the real loop, back at 2-space indentation
    module.write_text(source.with_suffix(".py").read_text())
    os.utime(module, ns=(9, 9))
    assert digest(source.read_text(), 10) == digest(re.sub(r"^( +)", lambda m: " " * (len(m[1]) // 2),
                                                           "/* re-indented */\n" + source.read_text(), flags=re.M), 11)


# --------------------------------------------------------------------------- the locked environment
def locked() -> dict[str, str]:
    """requirements.lock's pins, by normalised name."""
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        name, sep, version = line.split("#", 1)[0].strip().partition("==")
        if sep:
            pins[canonicalize_name(name)] = version
    return pins


def test_the_lock_pins_the_versions_the_committed_records_were_made_with():
    """Every library a committed record names ran at the version the lock pins (records of another environment
    need a new lock); records that list their whole environment list the lock's."""
    pins, records = locked(), [json.loads(p.read_text()) for p in sorted(REPRODUCED.rglob("*.json"))]
    assert records and {"torch", "torchvision", "lightning", "hydra-core", "numpy"} <= set(pins)
    for name in {n for r in records for n in r["packages"]} - {"python"}:
        assert {r["packages"].get(name) for r in records} == {pins[canonicalize_name(name)]}, name
    assert {".".join(r["packages"]["python"].split(".")[:2]) for r in records} == {"3.11"}  # the lock's CPython
    lock = {f"{name}=={version}" for name, version in pins.items()}
    for r in records:
        if "environment" in r:
            assert {d for d in r["environment"]["distributions"] if not d.startswith(("odenets==", "pip=="))} \
                == lock, r["run_name"]


def test_the_lock_satisfies_every_dependency_of_the_project():
    from importlib import metadata

    pins = locked()
    for text in metadata.requires("odenets"):
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": "dev"}):
            name = canonicalize_name(requirement.name)
            assert name in pins and requirement.specifier.contains(pins[name]), (text, pins.get(name))


# --------------------------------------------------------------------------- seeds
def test_seeds_draw_independent_data_orders():
    """No epoch order of seed s equals (or shifts into) any epoch order of seed s + 1."""
    def orders(seed):
        sampler = EpochSampler(1000, True, seed=seed)
        out = []
        for epoch in range(5):
            sampler.set_epoch(epoch)
            out.append(sampler.indices())
        return out
    for s in range(3):
        mine, next_seed = orders(s), orders(s + 1)
        assert all(not torch.equal(a, b) for a in mine for b in next_seed)
        assert all(float((a == b).float().mean()) < 0.05 for a in mine for b in next_seed)
    assert len({derive_seed(0, p, 1) for p in ("init", "order", "augment")}) == 3
    assert derive_seed(3, "order", 2) == derive_seed(3, "order", 2)


def test_augmentation_is_a_function_of_seed_epoch_and_batch(tmp_path):
    from helpers.dataset_files import write_mnist
    from odenets.data import build_datamodule

    write_mnist(tmp_path)
    draws = []
    for seed in (0, 0, 1):
        cfg = compose(["dataset=mnist", f"paths.data_dir={tmp_path}", "dataset.crop_padding=4", "dataset.flip=true"])
        dm = build_datamodule(cfg.dataset, seed=seed)
        dm.setup()
        batches = dm.train_dataloader()
        x, _ = next(iter(batches))
        draws.append(dm.transform(x, train=True))
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])


# --------------------------------------------------------------------------- keys
def test_keys_a_model_does_not_read_are_refused_when_set(tmp_path):
    out = cli("model=lm_resnet", "scheme=rk4", tmp_path=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith("error: scheme is set but this run does not read it (model=lm_resnet)")
    for args in (["model=lstm", "depth=10"], ["model=gru", "alpha=0.3"], ["model=ode_rnn", "checkpoint=true"]):
        out = cli(*args, "dataset=sine", f"paths.output_dir={tmp_path}/outputs", tmp_path=tmp_path, quick=False)
        assert out.returncode == 2 and f"error: {args[1].split('=')[0]} is set but" in out.stderr


def test_unread_defaults_stay_out_of_the_fingerprint():
    assert {"scheme", "depth", "alpha"} <= unused_keys(compose(["model=lstm"]))
    assert fingerprint(compose(["model=lstm"])) == fingerprint(compose(["model=lstm", "scheme=rk4"]))
    assert fingerprint(compose(["model=ode_rnn"])) != fingerprint(compose(["model=ode_rnn", "scheme=rk4"]))
    assert "alpha" in unused_keys(compose(["scheme=rk4"])) and "alpha" not in unused_keys(compose(["scheme=heun_ext"]))


def test_unknown_model_and_dataset_keys_are_one_line_errors():
    with pytest.raises(ConfigError, match="model.widht is not an option of model 'horesnet'; its options: scheme"):
        create_model("horesnet", widht=8)
    from odenets.data import build_datamodule

    cfg = compose(["+dataset.flipp=true"])
    with pytest.raises(ConfigError, match="dataset.flipp is not read by dataset 'digits'"):
        build_datamodule(cfg.dataset)
    assert "ode_rnn" in list_models("*rnn") and list_models() == sorted(list_models())


def test_activation_checkpointing_and_its_old_name():
    for override in ("checkpoint=true", "activation_checkpointing=true"):
        assert compose([override]).model.checkpoint is True
    assert compose([]).model.checkpoint is False


def test_learned_alpha_counts_the_stage_it_learns():
    """heun_ext at alpha = 0 is Euler, but a learnable alpha needs the second stage: depth 10 = 2 + 4 x 2."""
    net = HOResNet({"name": "heun_ext", "alpha": 0.0, "learn_alpha": True}, 10, width=4)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) + 1 == 10  # the classifier is the other weight layer
    with pytest.raises(ConfigError, match="depth=8 is not valid"):
        HOResNet({"name": "heun_ext", "alpha": 0.0, "learn_alpha": True}, 8, width=4)


# --------------------------------------------------------------------------- installable
GROUPS = ("budget", "dataset", "experiment", "hydra", "logger", "model", "optimizer", "paths", "scheme", "trainer")


@pytest.mark.slow
def test_the_wheel_holds_every_config_and_trains_from_anywhere(tmp_path):
    """`pip install .` in a fresh venv, then `odenets-train` from a folder outside the repository."""
    wheel_dir = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheel_dir), str(REPO)], check=True, capture_output=True, timeout=300)
    wheel, = wheel_dir.glob("odenets-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    local = {p.relative_to(CONF_DIR).as_posix() for p in CONF_DIR.rglob("*.yaml")}
    assert {f"odenets/conf/{p}" for p in local} <= set(names)
    assert {p.split("/")[0] for p in local} >= set(GROUPS)
    assert "odenets/core/fused_rnn.cpp" in names  # the recurrent cells' compiled loops, built where installed

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True, timeout=300)
    work = tmp_path / "elsewhere"
    work.mkdir()
    # the dependencies come from the project's environment; odenets itself only from the fresh venv
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"], "WANDB_MODE": "offline"}
    env.pop("PROJECT_ROOT", None)
    out = subprocess.run([venv / "bin" / "odenets-train", "dataset=digits", "trainer.max_epochs=1",
                          "dataset.subset=64", "trainer.enable_progress_bar=false"],
                         cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    (name, record), = results_under(work).items()
    assert record["status"] == "completed" and record["code"]["commit"] is None
    assert Path(record["code"]["modules"] and next(iter(venv.rglob("odenets/run/lifecycle.py")))).is_file()


@pytest.mark.slow
def test_the_quickest_committed_result_reproduces():
    """`make verify-results` on the quickest committed cpu-budget run that needs no data files."""
    out = subprocess.run([sys.executable, "scripts/verify_results.py", "--fastest", "--datasets", "sine"], cwd=REPO,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    assert out.stdout.startswith("ok")
