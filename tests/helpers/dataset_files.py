"""Tiny dataset files in the exact on-disk formats torchvision reads (CIFAR pickle batches,
SVHN .mat, MNIST idx), so the real dataset classes load them. CIFAR and SVHN are verified
against MD5 sums: `patch_checksums` points torchvision at the sums of the files written here."""

from __future__ import annotations

import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np
import scipy.io
from torchvision import datasets


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def write_cifar10(root: Path, per_batch: int = 8) -> dict[str, str]:
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        imgs = _images(per_batch, i)
        entry = {"batch_label": name, "data": imgs.transpose(0, 3, 1, 2).reshape(per_batch, -1),
                 "labels": [int(v) for v in np.arange(per_batch) % 10],
                 "filenames": [f"{j}.png" for j in range(per_batch)]}
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}, protocol=2))
    return {p.name: md5(p) for p in folder.iterdir()}


def write_cifar100(root: Path, n: int = 16) -> dict[str, str]:
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(["train", "test"]):
        imgs = _images(n, 10 + i)
        entry = {"data": imgs.transpose(0, 3, 1, 2).reshape(n, -1),
                 "fine_labels": [int(v) for v in np.arange(n) * 7 % 100], "coarse_labels": [0] * n}
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"f{i}" for i in range(100)]}, protocol=2))
    return {p.name: md5(p) for p in folder.iterdir()}


def write_svhn(root: Path, n: int = 12, splits=("train", "test", "extra")) -> dict[str, str]:
    folder = Path(root) / "svhn"
    folder.mkdir(parents=True, exist_ok=True)
    sums = {}
    for i, split in enumerate(splits):
        x = _images(n, 20 + i).transpose(1, 2, 3, 0)  # SVHN stores H x W x C x N
        y = (np.arange(n) % 10 + 1).reshape(-1, 1)  # labels 1..10, where 10 is the digit 0
        path = folder / f"{split}_32x32.mat"
        scipy.io.savemat(path, {"X": x, "y": y})
        sums[split] = md5(path)
    return sums


def write_mnist(root: Path, n_train: int = 20, n_test: int = 10) -> None:
    folder = Path(root) / "MNIST" / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        rng = np.random.default_rng(n)
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.tobytes())


def patch_checksums(monkeypatch, cifar10: dict | None = None, cifar100: dict | None = None,
                    svhn: dict | None = None) -> None:
    """Make torchvision's integrity checks expect the sums of the tiny files."""
    if cifar10:
        monkeypatch.setattr(datasets.CIFAR10, "train_list", [[f"data_batch_{k}", cifar10[f"data_batch_{k}"]]
                                                             for k in range(1, 6)])
        monkeypatch.setattr(datasets.CIFAR10, "test_list", [["test_batch", cifar10["test_batch"]]])
        monkeypatch.setattr(datasets.CIFAR10, "meta", {**datasets.CIFAR10.meta, "md5": cifar10["batches.meta"]})
    if cifar100:
        monkeypatch.setattr(datasets.CIFAR100, "train_list", [["train", cifar100["train"]]])
        monkeypatch.setattr(datasets.CIFAR100, "test_list", [["test", cifar100["test"]]])
        monkeypatch.setattr(datasets.CIFAR100, "meta", {**datasets.CIFAR100.meta, "md5": cifar100["meta"]})
    if svhn:
        monkeypatch.setattr(datasets.SVHN, "split_list", {
            s: [url, f, svhn.get(s, h)] for s, (url, f, h) in datasets.SVHN.split_list.items()})
