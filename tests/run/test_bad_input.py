"""Bad input gets one line on stderr naming the offending key, exit status 2, no traceback."""

from __future__ import annotations

import sys

import pytest

from odenets.config import CONF_DIR, compose
from odenets.run.validation import validate
from odenets.train import main

BAD_INPUTS = [
    # (overrides, a fragment the one-line message must contain)
    (["scheme=rk5"], "unknown scheme 'rk5'; valid choices for scheme: dopri5, euler"),
    (["dataset=cifar11"], "unknown dataset 'cifar11'; valid choices for dataset:"),
    (["model=resnet"], "unknown model 'resnet'; valid choices for model:"),
    (["trainer=tpu"], "unknown trainer 'tpu'; valid choices for trainer: cpu, ddp, ddp_cpu, gpu"),
    (["logger=neptune"], "unknown logger 'neptune'"),
    (["experiment=horesnet/imagenet"], "unknown experiment 'horesnet/imagenet'"),
    (["dept=58"], "Could not override 'dept'"),
    (["depth=[1,2"], "no viable alternative"),
    (["-m", "--cfg", "job"], "Only one of --run, --multirun, --cfg"),
    (["depth=a"], "depth='a' is not allowed; expected a positive integer"),
    (["depth=3.5"], "depth=3.5 is not allowed"),
    (["depth=-4"], "depth=-4 is not allowed"),
    (["scheme=rk4", "depth=30"], "depth=30 is not valid for scheme=rk4 (8 layers per block, depth = 2 + 8 x blocks); "
                                 "nearest valid depths: 26 or 34"),
    (["scheme=rk8", "depth=40"], "nearest valid depths: 30 or 58"),
    (["scheme=heun_ext", "alpha=1.5"], "alpha=1.5 is not allowed; expected a number in [0, 1]"),
    (["alpha=-0.1"], "alpha=-0.1 is not allowed"),
    (["alpha=x"], "alpha='x' is not allowed"),
    (["epochs=-1"], "epochs=-1 is not allowed; expected an integer >= 1"),
    (["epochs=0"], "epochs=0 is not allowed"),
    (["seed=-1"], "seed=-1 is not allowed"),
    (["dataset.batch_size=0"], "dataset.batch_size=0 is not allowed; expected an integer >= 1"),
    (["dataset.batch_size=abc"], "dataset.batch_size='abc' is not allowed"),
    (["dataset.subset=0"], "dataset.subset=0 is not allowed"),
    (["dataset.crop_padding=-1"], "dataset.crop_padding=-1 is not allowed"),
    (["dataset.pipeline=dali"], "dataset.pipeline='dali' is not allowed; expected tensor or torchvision"),
    (["optimizer.lr=0"], "optimizer.lr=0 is not allowed; expected a number > 0"),
    (["optimizer.lr=-0.1"], "optimizer.lr=-0.1 is not allowed"),
    (["optimizer.momentum=1.5"], "optimizer.momentum=1.5 is not allowed"),
    (["optimizer.weight_decay=-1"], "optimizer.weight_decay=-1 is not allowed"),
    (["trainer.devices=64"], "trainer.devices=64 but this machine has"),
    (["trainer.devices=0"], "trainer.devices=0 is not allowed"),
    (["precision=8-bit"], "precision='8-bit' is not allowed; expected one of 32-true"),
    (["compile=maybe"], "compile='maybe' is not allowed; expected true or false"),
    (["checkpoint_every_n_steps=-5"], "checkpoint_every_n_steps=-5 is not allowed"),
    (["model.width=0"], "model.width=0 is not allowed"),
    (["model.stage_weights=tied"], "model.stage_weights='tied' is not allowed; expected separate or shared"),
    (["scheme.h=0"], "scheme.h=0.0 must be > 0"),
    (["scheme=rk4", "+scheme.learn_alpha=true"], "learn_alpha=true needs a scheme with a weight alpha"),
    (["scheme=example_ralston3", "scheme.A=[[0,1,0],[0.5,0,0],[0,0.75,0]]"], "A is not strictly lower-triangular"),
    (["scheme=example_ralston3", "scheme.c=[0,0.5,0.5]"], "row 3 of A sums to 0.75 but c_3 = 0.5; rows of A must"),
    (["scheme=example_ralston3", "scheme.b=[0.5,0.5]"], "sizes disagree"),
    # second pass (issue 11): recurrent, ECG, sine, schedule and trainer keys; keys nothing reads
    (["model=ode_rnn", "model.hidden_size=0"], "model.hidden_size=0 is not allowed; expected an integer >= 1"),
    (["model=lstm", "model.chunk=0"], "model.chunk=0 is not allowed"),
    (["model=gru", "model.gate_init=keras"],
     "model.gate_init='keras' is not allowed; expected torch, forget or chrono"),
    (["model=lstm", "model.timescale=1"], "model.timescale=1 is not allowed"),
    (["model=phased_lstm", "model.r_on=2"], "model.r_on=2 is not allowed; expected a number in (0, 1]"),
    (["model=rkcnn", "model.dropout=1.5"], "model.dropout=1.5 is not allowed"),
    (["model=odenet", "model.tol=0"], "model.tol=0 is not allowed"),
    (["model=horesnet", "+model.widht=8"], "model.widht is not an option of model 'horesnet'"),
    (["dataset=mitbih", "dataset.test_fraction=1.5"], "dataset.test_fraction=1.5 is not allowed"),
    (["dataset=mitbih", "dataset.split=patient"], "dataset.split='patient' is not allowed"),
    (["dataset=sine", "model=lstm", "dataset.dt=0"], "dataset.dt=0 is not allowed"),
    (["+dataset.flipp=true"], "dataset.flipp is not read by dataset 'digits'"),
    (["scheduler.milestones=[10,5]"], "scheduler.milestones=[10, 5] is not allowed; expected an increasing list"),
    (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val=-1 is not allowed"),
    (["model=lm_resnet", "scheme=rk4"], "scheme is set but this run does not read it (model=lm_resnet); "
                                        "model=horesnet, model=ode_rnn read scheme; remove it"),
    (["model=lstm", "dataset=sine", "alpha=0.3"], "alpha is set but this run does not read it (model=lstm, "
                                                  "scheme=euler); model=heunnet_authors, scheme=heun_ext read alpha; "
                                                  "model=horesnet, model=ode_rnn read scheme"),
    (["wait_for_lock=1"], "wait_for_lock=1 is not allowed; expected true or false"),
]


@pytest.mark.parametrize("overrides,fragment", BAD_INPUTS, ids=[" ".join(o) for o, _ in BAD_INPUTS])
def test_bad_input(overrides, fragment, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(sys, "argv", ["train.py", f"paths.output_dir={tmp_path}", *overrides])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.delenv("ODENETS_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert fragment in lines[0], lines[0]


def test_there_are_at_least_thirty():
    assert len(BAD_INPUTS) >= 30


EXPERIMENTS = sorted(p.relative_to(CONF_DIR / "experiment").with_suffix("").as_posix()
                     for p in (CONF_DIR / "experiment").rglob("*.yaml"))


@pytest.mark.parametrize("budget", sorted(p.stem for p in (CONF_DIR / "budget").glob("*.yaml")))
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_and_budget_is_valid_input(experiment, budget):
    """The shipped recipes pass the same checks as user input (lists, nested values included)."""
    validate(compose([f"experiment={experiment}", f"budget={budget}"]))


def test_a_submitit_signal_no_run_can_catch_is_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(sys, "argv", ["train.py", f"paths.output_dir={tmp_path}", "epochs=1"])
    monkeypatch.setenv("SUBMITIT_PREEMPT_SIGNAL", "SIGUSR2")  # submitit adds SIG itself
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.delenv("ODENETS_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.strip().splitlines() == [
        "error: SUBMITIT_PREEMPT_SIGNAL='SIGUSR2' is not a signal a run can catch; expected a name without SIG, "
        "e.g. USR2, USR1, TERM, HUP"], err


def test_validation_returns_the_keys_set_but_not_read_and_the_caller_decides():
    """`validate` refuses bad values itself, but only reports a key the run does not read: a single run refuses it
    (test_bad_input above), a multirun's job leaves it out (tests/run/test_cluster_safety.py)."""
    overrides = ["model=lstm", "dataset=sine", "alpha=0.3"]
    found = validate(compose(overrides), overrides)
    assert list(found) == ["alpha"] and found["alpha"].startswith("this run does not read it (model=lstm")
    assert validate(compose(overrides), overrides[:2]) == {}
