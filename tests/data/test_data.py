"""Data: every vision dataset through its real torchvision class from tiny files in the real
format; real MNIST when present; batch-wise augmentation; DDP sharding; missing data."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from helpers import SHARED
from helpers.dataset_files import patch_checksums, write_cifar10, write_cifar100, write_mnist, write_svhn
from odenets.config import compose
from odenets.data import DATASETS, allowed_keys, augment, build_datamodule, dataset_keys
from odenets.data.base import EpochSampler, Split, TensorBatches
from odenets.errors import ConfigError

SHARED_MNIST = SHARED / "data"


def datamodule(name: str, root: Path, *overrides: str):
    cfg = compose([f"dataset={name}", f"paths.data_dir={root}", *overrides])
    dm = build_datamodule(cfg.dataset)
    dm.prepare_data()
    dm.setup()
    return dm


def test_cifar10_through_torchvision(tmp_path, monkeypatch):
    patch_checksums(monkeypatch, cifar10=write_cifar10(tmp_path, per_batch=8))
    dm = datamodule("cifar10", tmp_path)
    assert dm.train.x.shape == (40, 3, 32, 32) and dm.train.x.dtype == torch.uint8
    assert dm.test.x.shape == (8, 3, 32, 32) and dm.train.y.tolist()[:10] == list(range(8)) + [0, 1]


def test_cifar100_through_torchvision(tmp_path, monkeypatch):
    patch_checksums(monkeypatch, cifar100=write_cifar100(tmp_path, n=16))
    dm = datamodule("cifar100", tmp_path)
    assert dm.train.x.shape == (16, 3, 32, 32) and dm.train.y.tolist() == [i * 7 % 100 for i in range(16)]


@pytest.mark.parametrize("extra,n_train", [(False, 12), (True, 24)])
def test_svhn_through_torchvision(tmp_path, monkeypatch, extra, n_train):
    patch_checksums(monkeypatch, svhn=write_svhn(tmp_path, n=12))
    dm = datamodule("svhn", tmp_path, f"dataset.extra={extra}")
    assert dm.train.x.shape == (n_train, 3, 32, 32) and dm.test.x.shape == (12, 3, 32, 32)
    assert dm.train.y[:10].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]  # SVHN's label 10 is the digit 0


def test_mnist_through_torchvision(tmp_path):
    write_mnist(tmp_path, n_train=20, n_test=10)
    dm = datamodule("mnist", tmp_path)
    assert dm.train.x.shape == (20, 1, 28, 28) and dm.test.y.tolist() == list(range(10))


@pytest.mark.skipif(not (SHARED_MNIST / "MNIST" / "raw").is_dir(), reason="real MNIST not present")
def test_real_mnist():
    dm = datamodule("mnist", SHARED_MNIST)
    assert dm.train.x.shape == (60000, 1, 28, 28) and dm.test.x.shape == (10000, 1, 28, 28)
    assert torch.bincount(dm.test.y).tolist()[:3] == [980, 1135, 1032]


def test_digits_is_bundled_and_split_80_20():
    dm = datamodule("digits", Path("unused"))
    assert len(dm.train) == 1437 and len(dm.test) == 360 and dm.train.x.shape[1:] == (1, 8, 8)


@pytest.mark.parametrize("name,expected", [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"),
                                           ("svhn", "train,test}_32x32.mat"), ("mnist", "MNIST/raw")])
def test_missing_data_fails_in_one_line_naming_the_files(tmp_path, monkeypatch, name, expected):
    monkeypatch.setattr("torchvision.datasets.utils.download_url", _offline)
    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", _offline)
    monkeypatch.setattr("torchvision.datasets.mnist.download_and_extract_archive", _offline)
    monkeypatch.setattr("torchvision.datasets.cifar.download_and_extract_archive", _offline)
    monkeypatch.setattr("torchvision.datasets.svhn.download_url", _offline)
    with pytest.raises(ConfigError) as e:
        datamodule(name, tmp_path)
    message = str(e.value)
    assert "\n" not in message and expected in message and str(tmp_path) in message and "download failed" in message


def _offline(*args, **kwargs):
    raise OSError("<urlopen error [Errno -2] Name or service not known>")


def _corrupt(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


@pytest.mark.parametrize("name,path,message", [
    ("cifar10", "cifar-10-batches-py/data_batch_3", "is corrupt (MD5 differs"),
    ("cifar100", "cifar-100-python/test", "is corrupt (MD5 differs"),
    ("svhn", "svhn/test_32x32.mat", "is corrupt (MD5 differs"),
    ("mnist", "MNIST/raw/t10k-images-idx3-ubyte", "is truncated or corrupt (3928 bytes; its header says 7856)"),
    ("mnist", "MNIST/raw/train-labels-idx1-ubyte", "is truncated or corrupt (14 bytes; its header says 28)"),
])
def test_corrupt_or_truncated_files_are_named(tmp_path, monkeypatch, name, path, message):
    writers = {"cifar10": write_cifar10, "cifar100": write_cifar100, "svhn": write_svhn, "mnist": write_mnist}
    sums = writers[name](tmp_path)
    if name != "mnist":
        patch_checksums(monkeypatch, **{name: sums})
    _corrupt(tmp_path / path, (tmp_path / path).stat().st_size // 2)
    dm = build_datamodule(compose([f"dataset={name}", f"paths.data_dir={tmp_path}"]).dataset)
    with pytest.raises(ConfigError) as e:
        dm.setup()
    assert f"{tmp_path / path} {message}" in str(e.value) and "\n" not in str(e.value)


# -- batch-wise augmentation ----------------------------------------------------------------------
def test_random_crop_is_a_shift_of_the_padded_image():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.uint8).view(2, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    out = augment.random_crop(x, 2, generator=g)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        windows = [padded[i, :, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)


def test_random_crop_offsets_are_uniform_and_per_image():
    """Padding 1: each image's offset is uniform over 3 x 3, so the marked top-left pixel lands at
    (0,0), (0,1), (1,0) or (1,1) with probability 1/9 each and is cropped away with 5/9."""
    x = torch.zeros(9000, 1, 4, 4, dtype=torch.uint8)
    x[:, :, 0, 0] = 255
    out = augment.random_crop(x, 1, generator=torch.Generator().manual_seed(0))
    visible = out.flatten(1).max(1).values == 255
    position = out.flatten(1).argmax(1)[visible]
    freq = torch.bincount(position, minlength=16).float() / len(x)
    for p in (0, 1, 4, 5):
        assert abs(freq[p].item() - 1 / 9) < 0.015
    assert abs(1 - visible.float().mean().item() - 5 / 9) < 0.02


def test_random_flip_flips_about_half():
    x = torch.arange(1000 * 4, dtype=torch.float32).view(1000, 1, 1, 4)
    out = augment.random_flip(x, generator=torch.Generator().manual_seed(0))
    flipped = (out[:, 0, 0, 0] != x[:, 0, 0, 0])
    assert torch.equal(out[flipped], x[flipped].flip(-1)) and 0.45 < flipped.float().mean() < 0.55


def test_normalize_matches_torchvision():
    from torchvision.transforms import v2

    x = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    mean, std = torch.tensor([0.4, 0.5, 0.6]), torch.tensor([0.2, 0.25, 0.3])
    ref = v2.Normalize(mean.tolist(), std.tolist())(x.float() / 255)
    assert torch.allclose(augment.normalize(x, mean, std), ref, atol=1e-5)


def test_autoaugment_keeps_shape_and_dtype():
    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    out = augment.autoaugment(x, group=2)
    assert out.shape == x.shape and out.dtype == torch.uint8


# -- batches and DDP sharding ---------------------------------------------------------------------
def test_training_shards_are_disjoint_equal_and_reshuffled_each_epoch():
    split = Split(torch.arange(103), torch.arange(103))
    ranks = [TensorBatches(split, 10, EpochSampler(103, True, seed=3, rank=r, world_size=2)) for r in range(2)]
    seen = [torch.cat([x for x, _ in r]) for r in ranks]
    assert len(seen[0]) == len(seen[1]) == 51 and not set(seen[0].tolist()) & set(seen[1].tolist())
    assert len(ranks[0]) == 6
    assert torch.equal(torch.cat([x for x, _ in ranks[0]]), seen[0])  # same epoch, same order
    ranks[0].sampler.set_epoch(1)  # what Lightning calls at every epoch start
    assert not torch.equal(torch.cat([x for x, _ in ranks[0]]), seen[0])


def test_evaluation_shards_cover_every_sample_once():
    split = Split(torch.arange(11), torch.arange(11))
    seen = torch.cat([x for r in range(3) for x, _ in TensorBatches(split, 4, EpochSampler(11, False, 0, r, 3))])
    assert sorted(seen.tolist()) == list(range(11))


@pytest.mark.parametrize("consumed,expected_rest", [(2, 3), (5, 5)])
def test_batches_resume_mid_epoch(consumed, expected_rest):
    """A state saved after k of 5 batches resumes with the other 5 - k; after all 5, with a new epoch."""
    split = Split(torch.arange(50), torch.arange(50))
    full = TensorBatches(split, 10, EpochSampler(50, True, seed=1))
    it = iter(full)
    first = [next(it)[0] for _ in range(consumed)]
    resumed = TensorBatches(split, 10, EpochSampler(50, True, seed=1))
    resumed.load_state_dict(full.state_dict())
    rest = [x for x, _ in resumed]
    assert len(rest) == expected_rest
    if consumed < 5:
        assert torch.equal(torch.cat(first + rest), torch.cat([x for x, _ in full]))


def test_torchvision_pipeline_yields_normalised_batches(tmp_path):
    write_mnist(tmp_path)
    dm = datamodule("mnist", tmp_path, "dataset.pipeline=torchvision", "dataset.crop_padding=2",
                    "dataset.batch_size=5")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (5, 1, 28, 28) and x.dtype == torch.float32 and y.shape == (5,)


# -- the validation split (dataset.val_fraction) ---------------------------------------------------
def _rows(split: Split) -> list[bytes]:
    """The split's samples (image and label) as sortable bytes: a multiset comparison of splits."""
    return sorted(x.numpy().tobytes() + bytes([int(y)]) for x, y in zip(split.x, split.y, strict=True))


def test_without_val_fraction_the_training_split_is_untouched():
    dm = datamodule("digits", Path("."), "dataset.subset=200")
    train, test = dm.load()
    assert dm.val is None and torch.equal(dm.train.x, train.x[:200]) and torch.equal(dm.train.y, train.y[:200])
    assert isinstance(dm.val_dataloader(), TensorBatches) and dm.val_dataloader().split is dm.test


def test_the_validation_split_is_held_out_stratified_and_the_same_for_every_seed():
    full = datamodule("digits", Path("."))
    splits = [build_datamodule(compose(["dataset.val_fraction=0.1"]).dataset, seed=seed) for seed in (0, 7)]
    for dm in splits:
        dm.setup()
    dm = splits[0]
    assert len(dm.val) == math.ceil(0.1 * len(full.train)) and len(dm.train) + len(dm.val) == len(full.train)
    assert sorted(_rows(dm.train) + _rows(dm.val)) == _rows(full.train)  # a partition: held out of training
    per_class, val_per_class = torch.bincount(full.train.y), torch.bincount(dm.val.y, minlength=10)
    assert ((val_per_class - 0.1 * per_class).abs() <= 1).all()  # stratified by class
    assert torch.equal(dm.val.x, splits[1].val.x) and torch.equal(dm.train.y, splits[1].train.y)  # not the run's seed
    assert torch.equal(dm.test.x, full.test.x)
    loaders = dm.val_dataloader()  # validation first, then test; Lightning names them by index
    assert [b.split for b in loaders] == [dm.val, dm.test] and isinstance(dm.test_dataloader(), TensorBatches)


def test_the_validation_split_is_taken_from_the_subset():
    dm = datamodule("digits", Path("."), "dataset.subset=200", "dataset.val_fraction=0.25")
    full = datamodule("digits", Path("."))
    assert (len(dm.train), len(dm.val)) == (150, 50)
    assert sorted(_rows(dm.train) + _rows(dm.val)) == _rows(full.train.head(200))


def test_validation_shards_cover_every_sample_once_under_ddp():
    from types import SimpleNamespace

    dm = datamodule("digits", Path("."), "dataset.val_fraction=0.1", "dataset.eval_batch_size=16")
    seen = []
    for rank in range(2):
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        val, _ = dm.val_dataloader()
        seen += [x for x, _ in val]
    assert sorted(x.numpy().tobytes() for x in torch.cat(seen)) == sorted(x.numpy().tobytes() for x in dm.val.x)


def test_a_validation_split_too_small_to_stratify_is_one_line():
    with pytest.raises(ConfigError, match=r"dataset.val_fraction=0.05 cannot hold out a stratified validation split "
                                          r"of 64 training samples \(.*\); raise it or the subset"):
        datamodule("digits", Path("."), "dataset.subset=64", "dataset.val_fraction=0.05")
    from odenets.run.validation import validate

    with pytest.raises(ConfigError, match=r"dataset.val_fraction=1.5 is not allowed; expected null or a number in "
                                          r"\(0, 1\)"):
        validate(compose(["dataset.val_fraction=1.5"]))


def test_the_sine_validation_split_is_the_latest_training_windows():
    full, dm = datamodule("sine", Path(".")), datamodule("sine", Path("."), "dataset.val_fraction=0.1")
    held = math.ceil(0.1 * len(full.train))
    assert torch.equal(dm.val.x, full.train.x[-held:]) and torch.equal(dm.val.y, full.train.y[-held:])
    assert torch.equal(dm.train.x, full.train.x[:-held]) and torch.equal(dm.test.x, full.test.x)
    assert torch.equal(dm.task_kwargs()["seed_window"], full.task_kwargs()["seed_window"])  # the free run is the same


def test_the_torchvision_pipeline_serves_the_validation_split_too(tmp_path):
    write_mnist(tmp_path, n_train=40)
    dm = datamodule("mnist", tmp_path, "dataset.pipeline=torchvision", "dataset.val_fraction=0.25",
                    "dataset.eval_batch_size=7")
    val, test = dm.val_dataloader()
    assert [len(loader.dataset) for loader in (val, test)] == [10, 10] and len(dm.train) == 30
    x, _ = next(iter(val))
    assert x.shape == (7, 1, 28, 28) and len(dm.test_dataloader().dataset) == 10


# -- each data module is the only validator of its keys (odenets.allowed) ----------------------------------------
# the dataset keys run/validation.py checked for every dataset before the data modules declared them
CHECKED_BEFORE = {"batch_size", "eval_batch_size", "subset", "test_subset", "val_fraction", "num_workers",
                  "crop_padding", "flip", "autoaugment", "pipeline", "test_fraction", "split_seed", "split", "fs",
                  "window_s", "rr_factor", "beat_length", "cache", "extra", "dt", "window", "length_pi",
                  "train_fraction", "tolerance", "horizon"}
CANDIDATES = (0, -1, 1, 1.5, 2, "x", None, True)  # the first a range refuses is the bad value


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_key_checked_before_has_a_range_declared_by_its_data_module(name):
    assert CHECKED_BEFORE & set(dataset_keys(name)) <= set(allowed_keys(name)), name


@pytest.mark.parametrize("name,key", [(n, k) for n in sorted(DATASETS) for k in allowed_keys(n)])
def test_each_data_module_refuses_a_value_out_of_its_range_in_one_line(name, key):
    """By `build_datamodule` (before the data module exists) and by `validate` (before any data is touched)."""
    import re

    from omegaconf import open_dict

    from odenets.config import compose_row
    from odenets.run.validation import validate

    allowed = allowed_keys(name)[key]
    bad = next(v for v in CANDIDATES if not allowed(v))
    line = rf"^dataset\.{key}={re.escape(repr(bad))} is not allowed; expected {re.escape(allowed.text)}$"
    with pytest.raises(ConfigError, match=line):
        build_datamodule({"name": name, key: bad})
    signal = name in ("sine", "mitbih", "mitbih_csv")
    cfg = compose_row([f"dataset={name}", f"model={'lstm' if signal else 'horesnet'}"])
    with open_dict(cfg):
        cfg.dataset[key] = bad
    with pytest.raises(ConfigError, match=line):
        validate(cfg)
