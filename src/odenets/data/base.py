"""In-memory data modules: whole datasets as tensors, batches drawn by index.

Small datasets (CIFAR, SVHN, MNIST, digits, ECG beats, sine windows) fit in memory as tensors.
`TensorDataModule` keeps them there (images as uint8) and serves batches by indexing a seeded
permutation: no per-sample Python work, no worker processes. Under DDP each rank takes its own
slice of the same permutation (the DistributedSampler contract: equal-sized shards, the tail
dropped for training; evaluation shards are disjoint and cover every sample once). Batches are
moved to the training device first and transformed there (`on_after_batch_transfer`), so image
augmentation runs batch-wise on the GPU when training on one.

`val_fraction` holds out part of the training split as a validation split (`hold_out`): for classes,
stratified by class (scikit-learn's `train_test_split`, ceil(fraction x n) samples) and drawn from the fixed
`odenets.seeding.SPLIT_SEED`, so every run seed and every model validates on the same samples. It is taken
after `subset`: the fraction is of the samples the run would otherwise train on (a smoke-sized subset gets a
smoke-sized validation split) and, for a given subset, the same for every arm. The validation loop then serves
two dataloaders, validation (index 0) and test (1); without a validation split it serves the test split alone,
as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import torch
from torch import Tensor

from odenets.allowed import Allowed, integer, number, optional
from odenets.errors import ConfigError
from odenets.seeding import SPLIT_SEED, derive_seed, generator


@dataclass
class Split:
    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return len(self.y)

    def head(self, n: int | None) -> Split:
        return self if n is None else Split(self.x[:n], self.y[:n])

    def take(self, idx: Tensor) -> Split:
        return Split(self.x[idx], self.y[idx])


class EpochSampler:
    """Sample indices of one rank for one epoch, like `DistributedSampler`: Lightning calls
    `set_epoch` at every epoch start, so the permutation is a function of (seed, epoch) alone (its own
    stream, `odenets.seeding`) and a resumed run sees the same order. Training shards are equal-sized
    (the tail is dropped); evaluation shards are contiguous, disjoint and cover every sample once."""

    def __init__(self, n: int, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.shuffle, self.seed, self.rank, self.world_size = n, shuffle, seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> Tensor:
        if not self.shuffle:
            bounds = [self.n * r // self.world_size for r in range(self.world_size + 1)]
            return torch.arange(bounds[self.rank], bounds[self.rank + 1])
        per_rank = self.n // self.world_size
        perm = torch.randperm(self.n, generator=generator(self.seed, "order", self.epoch))
        return perm[self.rank * per_rank:(self.rank + 1) * per_rank]

    def __len__(self) -> int:
        return self.n // self.world_size if self.shuffle else len(self.indices())


class TensorBatches:
    """Batches (x[idx], y[idx]) in the order of `sampler`; no per-sample Python work.

    Stateful (`state_dict`/`load_state_dict` hold the batches already served this epoch), so a
    run resumed from a mid-epoch checkpoint continues with exactly the batches it had not seen.
    """

    batch_sampler = None  # what Lightning inspects on a DataLoader: the order comes from `sampler`

    def __init__(self, split: Split, batch_size: int, sampler: EpochSampler) -> None:
        self.split, self.batch_size, self.sampler = split, batch_size, sampler
        self._start = self._served = 0

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)

    def __iter__(self):
        idx = self.sampler.indices()
        start, self._start = self._start, 0
        for b in range(start, len(self)):
            self._served = b + 1
            sel = idx[b * self.batch_size:(b + 1) * self.batch_size]
            yield self.split.x.index_select(0, sel), self.split.y.index_select(0, sel)

    @property
    def batches_served(self) -> int:
        """Batches of this epoch handed out so far (the one being trained on included)."""
        return self._served

    def state_dict(self) -> dict:
        return {"batches_served": self._served}

    def load_state_dict(self, state: dict) -> None:
        """Resume mid-epoch; a state saved after the epoch's last batch starts the next epoch afresh."""
        self._start = state["batches_served"] % len(self)


class TensorDataModule(L.LightningDataModule):
    """Base class: subclasses implement `load()` returning the (train, test) splits as tensors.

    Keyword arguments are the `conf/dataset/*.yaml` keys; those a subclass does not use are
    ignored by it. `subset` / `test_subset` keep the first N samples (smoke budgets); `val_fraction`
    holds out that fraction of the (subset) training split for validation (`hold_out`; null: none).
    """

    task = "classification"
    class_names: tuple[str, ...] | None = None  # named classes get per-class recall and a confusion matrix
    # what each key allows (`odenets.allowed`); a subclass adds its own keys' (`allowed_keys`: up the classes)
    ALLOWED: dict[str, Allowed] = {
        "batch_size": integer(1),
        "eval_batch_size": integer(1),
        "subset": optional(integer(1)),
        "test_subset": optional(integer(1)),
        "val_fraction": optional(number(lambda v: 0 < v < 1, "a number in (0, 1)")),
    }

    def __init__(self, name: str, root: str = "data", batch_size: int = 128, eval_batch_size: int = 512,
                 subset: int | None = None, test_subset: int | None = None, val_fraction: float | None = None,
                 seed: int = 0, **options) -> None:
        super().__init__()
        self.name, self.root = name, root
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.subset, self.test_subset, self.val_fraction, self.seed = subset, test_subset, val_fraction, seed
        self.options = options
        self.train: Split | None = None
        self.val: Split | None = None
        self.test: Split | None = None
        self._train_batches: TensorBatches | None = None

    # -- to implement ------------------------------------------------------------------------
    def load(self) -> tuple[Split, Split]:
        raise NotImplementedError

    def transform(self, x: Tensor, train: bool) -> Tensor:
        """Device-side batch transform (augmentation, normalisation). Identity by default."""
        return x

    def task_kwargs(self) -> dict:
        """Arguments of the task's LightningModule that come from the data."""
        return {"num_classes": self.options["num_classes"], "class_names": self.class_names}

    def validation_indices(self, train: Split) -> Tensor:
        """Which training samples `hold_out` holds out: ceil(val_fraction x n), stratified by class, drawn from
        the fixed split seed. A data module without classes overrides this."""
        from sklearn.model_selection import train_test_split

        labels = train.y.numpy()
        try:
            _, held = train_test_split(range(len(labels)), test_size=self.val_fraction, stratify=labels,
                                       random_state=derive_seed(SPLIT_SEED, "validation") % 2**32)
        except ValueError as e:  # fewer held-out samples than classes, or a class of one sample
            raise ConfigError(f"dataset.val_fraction={self.val_fraction} cannot hold out a stratified validation "
                              f"split of {len(labels)} training samples ({e}); raise it or the subset") from None
        return torch.tensor(sorted(held), dtype=torch.long)

    # -- Lightning hooks ---------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Downloads (rank 0 only); `load()` must then find the files without downloading."""
        self.download()

    def download(self) -> None:
        """Fetch missing files when online; datasets that need nothing leave this as is."""

    def setup(self, stage: str | None = None) -> None:
        if self.train is None:
            train, test = self.load()
            self.train, self.val = self.hold_out(train.head(self.subset))
            self.test = test.head(self.test_subset)

    def hold_out(self, train: Split) -> tuple[Split, Split | None]:
        """(what is trained on, the validation split): `train` itself and None without `val_fraction`; else
        the samples of `validation_indices` held out, both parts in their original order."""
        if self.val_fraction is None:
            return train, None
        held = self.validation_indices(train)
        kept = torch.ones(len(train), dtype=torch.bool)
        kept[held] = False
        return train.take(kept.nonzero().flatten()), train.take(held)

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> TensorBatches:
        rank, world = self._world()
        sampler = EpochSampler(len(self.train), shuffle=True, seed=self.seed, rank=rank, world_size=world)
        self._train_batches = TensorBatches(self.train, self.batch_size, sampler)
        return self._train_batches

    def eval_loader(self, split: Split):
        """Batches of an evaluation split; under DDP each rank evaluates its own contiguous shard."""
        rank, world = self._world()
        return TensorBatches(split, self.eval_batch_size, EpochSampler(len(split), False, 0, rank, world))

    def val_dataloader(self):
        """What each epoch evaluates: the test split, after the validation split when there is one."""
        if self.val is None:
            return self.eval_loader(self.test)
        return [self.eval_loader(self.val), self.eval_loader(self.test)]

    def test_dataloader(self):
        return self.eval_loader(self.test)

    def augmentation_generator(self, device: torch.device) -> torch.Generator:
        """The stream of this training batch's augmentation draws: a function of (seed, epoch, rank, batch)."""
        rank, _ = self._world()
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        batch = self._train_batches.batches_served if self._train_batches is not None else 0
        return generator(self.seed, "augment", epoch, rank, batch, device=device)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, y = batch
        training = self.trainer is not None and self.trainer.training
        return self.transform(x, train=training), y
