"""Image classification data: CIFAR-10/100, SVHN, MNIST and Fashion-MNIST through torchvision, and
scikit-learn's bundled 8x8 digits. Fashion-MNIST (Xiao et al. 2017) is not in the papers: a real image
task harder than MNIST and small enough for a CPU, for checking HO-ResNet's orderings without CIFAR.

The torchvision dataset classes download (when online) and verify the files (CIFAR and SVHN
against their published MD5 sums); their arrays are then kept in memory as uint8 tensors and
served by `TensorDataModule`. `pipeline: torchvision` instead serves the same data through a
`DataLoader` with per-image PIL transforms (pad-and-crop, flip, AutoAugment, normalise).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader
from torchvision import datasets, transforms
from torchvision.datasets.utils import check_integrity

from odenets.allowed import BOOL, integer, one_of
from odenets.data import augment
from odenets.data.base import Split, TensorDataModule
from odenets.errors import ConfigError


class _Unreadable(Exception):
    """torchvision could not read (or download) a dataset's files; the cause is its own error."""


# What a torchvision dataset class raises on missing, truncated or garbled files or a failed download (found by
# damaging each format's files): RuntimeError (not found, MD5), OSError (.mat, network), TypeError and ValueError
# (idx header), LookupError and pickle's errors (CIFAR batches), EOFError.
READ_ERRORS = (RuntimeError, OSError, TypeError, ValueError, LookupError, EOFError, pickle.UnpicklingError)


def _read(cls, *args, **kwargs):
    """`cls(*args, **kwargs)`, a torchvision dataset; only its own reading errors become `_Unreadable`."""
    try:
        return cls(*args, **kwargs)
    except READ_ERRORS as e:
        raise _Unreadable() from e


def _cifar(cls):
    def load(root: Path, train: bool, download: bool, extra: bool) -> Split:
        ds = _read(cls, str(root), train=train, download=download)
        return Split(torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets))
    return load


def _svhn(root: Path, train: bool, download: bool, extra: bool) -> Split:
    splits = (["train", "extra"] if extra else ["train"]) if train else ["test"]
    parts = [_read(datasets.SVHN, str(root / "svhn"), split=s, download=download) for s in splits]
    return Split(torch.cat([torch.from_numpy(p.data) for p in parts]),
                 torch.cat([torch.from_numpy(p.labels.astype(np.int64)) for p in parts]))


def _idx(cls):
    def load(root: Path, train: bool, download: bool, extra: bool) -> Split:
        ds = _read(cls, str(root), train=train, download=download)
        return Split(ds.data.unsqueeze(1).contiguous(), ds.targets.clone())
    return load


# name -> (loader, the files it expects under the data root)
SOURCES = {
    "cifar10": (_cifar(datasets.CIFAR10), "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}"),
    "cifar100": (_cifar(datasets.CIFAR100), "cifar-100-python/{train,test,meta}"),
    "svhn": (_svhn, "svhn/{train,test}_32x32.mat (and extra_32x32.mat with dataset.extra=true)"),
    "mnist": (_idx(datasets.MNIST), "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"),
    "fashion_mnist": (_idx(datasets.FashionMNIST), "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"),
}


def _load(name: str, root: Path, train: bool, download: bool, extra: bool = False) -> Split:
    """One split through torchvision; missing or corrupt files become one clear ConfigError (a failure of our
    own conversion to tensors is a bug, and keeps its traceback)."""
    loader, expected = SOURCES[name]
    try:
        return loader(root, train, download, extra)
    except _Unreadable as unreadable:
        e = unreadable.__cause__
        if download:
            reason = (str(e).splitlines() or [type(e).__name__])[0]
            raise ConfigError(f"{name}: files not found under {root} (expected {expected}) and the download "
                              f"failed ({reason}); copy them there or set DATA_DIR") from None
        problem = first_bad_file(name, root, extra) or f"a file under {root} is unreadable ({type(e).__name__}: {e})"
        raise ConfigError(f"{name}: {problem}; expected {expected}; delete it to download again") from None


def first_bad_file(name: str, root: Path, extra: bool = False) -> str | None:
    """Which expected file is missing, fails its published MD5 sum (CIFAR, SVHN), or is shorter than
    its header says (MNIST idx: 16 + n*28*28 bytes of images, 8 + n of labels)."""
    if name in ("cifar10", "cifar100"):
        cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
        folder = root / cls.base_folder
        checks = [(folder / f, md5) for f, md5 in cls.train_list + cls.test_list] + \
            [(folder / cls.meta["filename"], cls.meta["md5"])]
    elif name == "svhn":
        checks = [(root / "svhn" / datasets.SVHN.split_list[s][1], datasets.SVHN.split_list[s][2])
                  for s in ("train", "test", *(("extra",) if extra else ()))]
    else:
        return _bad_idx_file(root / ("FashionMNIST" if name == "fashion_mnist" else "MNIST") / "raw")
    for path, md5 in checks:
        if not path.is_file():
            return f"{path} is missing"
        if not check_integrity(str(path), md5):
            return f"{path} is corrupt (MD5 differs from the published {md5})"
    return None


def _bad_idx_file(folder: Path) -> str | None:
    for prefix in ("train", "t10k"):
        for kind, item_bytes in (("images-idx3", 28 * 28), ("labels-idx1", 1)):
            path = folder / f"{prefix}-{kind}-ubyte"
            if not path.is_file():
                return f"{path} is missing"
            head = path.read_bytes()[:8]
            count = int.from_bytes(head[4:8], "big") if len(head) == 8 else 0
            wanted = (16 if item_bytes > 1 else 8) + count * item_bytes
            if path.stat().st_size != wanted:
                return f"{path} is truncated or corrupt ({path.stat().st_size} bytes; its header says {wanted})"
    return None


def _digits() -> tuple[Split, Split]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.rint(digits.images * (255 / 16)).astype(np.uint8)[:, None]
    x_tr, x_te, y_tr, y_te = train_test_split(images, digits.target, test_size=0.2, random_state=0,
                                              stratify=digits.target)
    as_split = lambda x, y: Split(torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)))
    return as_split(x_tr, y_tr), as_split(x_te, y_te)


class VisionDataModule(TensorDataModule):
    """cifar10, cifar100, svhn (optionally with `extra`), mnist, fashion_mnist and digits."""

    ALLOWED = {"num_workers": integer(0), "crop_padding": integer(0, text="an integer >= 0 (pixels)"), "flip": BOOL,
               "autoaugment": BOOL, "pipeline": one_of("tensor", "torchvision"), "extra": BOOL}

    def __init__(self, name: str, root: str = "data", crop_padding: int = 0, flip: bool = False,
                 autoaugment: bool = False, autoaugment_group: int = 1, mean=(0.5,), std=(0.5,),
                 pipeline: str = "tensor", num_workers: int = 0, extra: bool = False, **kwargs) -> None:
        super().__init__(name, root, **kwargs)
        self.crop_padding, self.flip, self.autoaugment = crop_padding, flip, autoaugment
        self.autoaugment_group, self.extra = autoaugment_group, extra
        self.mean, self.std = torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
        self.pipeline, self.num_workers = pipeline, num_workers

    def download(self) -> None:
        if self.name != "digits":
            for train in (True, False):
                _load(self.name, Path(self.root), train, download=True, extra=self.extra)

    def load(self) -> tuple[Split, Split]:
        if self.name == "digits":
            return _digits()
        root = Path(self.root)
        return (_load(self.name, root, True, download=False, extra=self.extra),
                _load(self.name, root, False, download=False))

    # -- tensor pipeline: augmentation and normalisation on the batch's device -----------------
    def transform(self, x: Tensor, train: bool) -> Tensor:
        if self.pipeline == "torchvision":
            return x  # the DataLoader's PIL transforms did everything
        if train and (self.autoaugment or self.crop_padding or self.flip):
            g = self.augmentation_generator(x.device)
            if self.autoaugment:
                x = augment.autoaugment(x, self.autoaugment_group, generator=g)
            x = augment.random_crop(x, self.crop_padding, generator=g)
            if self.flip:
                x = augment.random_flip(x, generator=g)
        return augment.normalize(x, self.mean.to(x.device), self.std.to(x.device))

    # -- torchvision pipeline: the classic DataLoader with per-image PIL transforms ------------
    def pil_transform(self, train: bool) -> transforms.Compose:
        ops = []
        if train:
            if self.autoaugment:
                ops.append(transforms.AutoAugment(transforms.AutoAugmentPolicy.CIFAR10))
            if self.crop_padding:
                ops.append(transforms.RandomCrop(self.options.get("image_size", 32), padding=self.crop_padding))
            if self.flip:
                ops.append(transforms.RandomHorizontalFlip())
        ops += [transforms.ToTensor(), transforms.Normalize(self.mean.tolist(), self.std.tolist())]
        return transforms.Compose(ops)

    def _loader(self, split: Split, train: bool) -> DataLoader:
        return DataLoader(_PILDataset(split, self.pil_transform(train)),
                          batch_size=self.batch_size if train else self.eval_batch_size, shuffle=train,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0, drop_last=False)

    def train_dataloader(self):
        return self._loader(self.train, True) if self.pipeline == "torchvision" else super().train_dataloader()

    def eval_loader(self, split: Split):
        return self._loader(split, False) if self.pipeline == "torchvision" else super().eval_loader(split)


class _PILDataset(torch.utils.data.Dataset):
    """Images of a uint8 split as PIL images through `transform` (the torchvision recipe)."""

    def __init__(self, split: Split, transform) -> None:
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        from PIL import Image

        img = self.split.x[i]
        pil = Image.fromarray(img[0].numpy(), mode="L") if img.shape[0] == 1 else Image.fromarray(
            img.permute(1, 2, 0).numpy())
        return self.transform(pil), self.split.y[i]
