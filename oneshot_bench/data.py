"""Datasets held on the device as tensors, with batched on-device augmentation.

Small NAS budgets are dominated by per-batch Python overhead, so the whole split lives on the device once
(CIFAR-10 at 32 px is 600 MB as float32) and augmentation is a few tensor ops over the batch.
"""
from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .config import DataConfig
from .errors import ConfigError, DataError

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


@dataclass
class Split:
    x: torch.Tensor  # float32, normalized, N x C x H x W (channels_last memory)
    y: torch.Tensor  # int64, N

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class DataBundle:
    """Search-train / search-val / test splits plus what networks need to know about the inputs."""

    name: str
    train: Split  # weights are trained on this
    val: Split  # architecture parameters, controllers and rankings use this (never the test split)
    test: Split  # final accuracy only
    num_classes: int
    in_channels: int
    resolution: int
    sha256: str  # hash of the raw source files (or arrays), recorded with every result
    augment: bool = True

    def to(self, device: torch.device) -> DataBundle:
        move = lambda s: Split(s.x.to(device), s.y.to(device))  # noqa: E731
        return DataBundle(self.name, move(self.train), move(self.val), move(self.test), self.num_classes,
                          self.in_channels, self.resolution, self.sha256, self.augment)

    def batches(self, split: str, batch_size: int, generator: torch.Generator, *, shuffle: bool = True,
                augment: Optional[bool] = None, max_batches: Optional[int] = None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass over a split. Augmentation defaults to on for `train` (when the data config allows)."""
        data: Split = getattr(self, split)
        n = len(data)
        if n == 0:
            raise DataError(f"the {split} split is empty; lower data.val_fraction or raise the image caps.")
        order = torch.randperm(n, generator=generator).to(data.y.device) if shuffle else torch.arange(
            n, device=data.y.device)
        augment = (split == "train" and self.augment) if augment is None else augment
        for b, start in enumerate(range(0, n, batch_size)):
            if max_batches is not None and b >= max_batches:
                return
            idx = order[start:start + batch_size]
            x, y = data.x[idx], data.y[idx]
            if augment:
                x = augment_batch(x, generator)
            yield x.contiguous(memory_format=torch.channels_last), y

    def infinite_batches(self, split: str, batch_size: int, generator: torch.Generator, **kw
                         ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield from self.batches(split, batch_size, generator, **kw)


def augment_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop with zero padding (1/8 of the side, 4 px at 32 px) and random horizontal flip, per sample."""
    b, c, h, w = x.shape
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    rows = oy[:, None] + torch.arange(h, device=x.device)  # b x h
    cols = ox[:, None] + torch.arange(w, device=x.device)  # b x w
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    bi = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]  # b x h x w x c
    return out.permute(0, 3, 1, 2)


def _prepare(x: np.ndarray, mean, std, resolution: int) -> torch.Tensor:
    t = torch.from_numpy(x).float()
    if t.shape[-1] != resolution:
        t = F.interpolate(t, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return ((t - m) / s).contiguous(memory_format=torch.channels_last)


def _split_train_val(x, y, val_fraction: float, seed: int, max_train, max_val):
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction must be in (0, 1), got {val_fraction}.")
    perm = np.random.default_rng(seed).permutation(len(y))
    n_val = int(round(len(y) * val_fraction))
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    if max_train is not None:
        train_idx = train_idx[:max_train]
    if max_val is not None:
        val_idx = val_idx[:max_val]
    return (x[train_idx], y[train_idx]), (x[val_idx], y[val_idx])


def resolve_cifar_root(cfg: DataConfig) -> Path:
    root = cfg.root or os.environ.get(cfg.root_env)
    if not root:
        raise DataError(
            f"data=cifar10 needs a dataset folder: set data.root=/path/to/cifar (the folder holding "
            f"cifar-10-batches-py/) or the env var {cfg.root_env}. Add data.download=true to fetch it when online.")
    path = Path(root).expanduser()
    return path / "cifar-10-batches-py" if (path / "cifar-10-batches-py").is_dir() else path


def load_cifar10_batches(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """Read the official python batch format: (train_x, train_y, test_x, test_y, sha256 of the files)."""
    missing = [f for f in CIFAR10_FILES if not (folder / f).is_file()]
    if missing:
        raise DataError(f"CIFAR-10 files {missing} are missing under {folder}. Point data.root at the folder that "
                        f"holds cifar-10-batches-py/, or set data.download=true when online.")
    digest = hashlib.sha256()
    xs, ys = [], []
    for name in CIFAR10_FILES:
        raw = (folder / name).read_bytes()
        digest.update(raw)
        try:
            batch = pickle.loads(raw, encoding="bytes")
            # the official files have bytes keys; re-pickled copies (like the test subset) may have str keys
            batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
            data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            labels = np.asarray(batch["labels"], dtype=np.int64)
        except Exception as e:  # truncated/corrupt pickle: say which file
            raise DataError(f"{folder / name} is not a readable CIFAR-10 python batch ({e}). Re-download it.") from None
        if len(labels) != len(data):
            raise DataError(f"{folder / name}: {len(labels)} labels for {len(data)} images.")
        xs.append(data)
        ys.append(labels)
    return (np.concatenate(xs[:5]), np.concatenate(ys[:5]), xs[5], ys[5], digest.hexdigest())


def _download_cifar(path: Path) -> None:
    import torchvision

    try:
        torchvision.datasets.CIFAR10(str(path.parent if path.name == "cifar-10-batches-py" else path), download=True)
    except Exception as e:
        raise DataError(f"downloading CIFAR-10 into {path} failed ({e}); copy the files there by hand.") from None


def load_data(cfg: DataConfig, *, resolution: int, seed: int, max_train_images: Optional[int] = None,
              max_val_images: Optional[int] = None) -> DataBundle:
    if cfg.name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = (d.images[:, None, :, :] / 16.0).astype(np.float32)
        y = d.target.astype(np.int64)
        # fixed test split (20%) independent of the run seed, so final accuracies are comparable across seeds
        perm = np.random.default_rng(12345).permutation(len(y))
        n_test = len(y) // 5
        test_x, test_y, tr_x, tr_y = x[perm[:n_test]], y[perm[:n_test]], x[perm[n_test:]], y[perm[n_test:]]
        mean, std, channels = (float(x.mean()),), (float(x.std()),), 1
        sha = hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()
    elif cfg.name == "cifar10":
        folder = resolve_cifar_root(cfg)
        if cfg.download and not (folder / "data_batch_1").is_file():
            _download_cifar(folder)
        tr_x, tr_y, test_x, test_y, sha = load_cifar10_batches(folder)
        tr_x, test_x = tr_x.astype(np.float32) / 255.0, test_x.astype(np.float32) / 255.0
        mean, std, channels = CIFAR10_MEAN, CIFAR10_STD, 3
    else:
        raise ConfigError(f"unknown data {cfg.name!r}. Valid choices: cifar10, digits. Pick one with `data=<name>`.")
    (trx, try_), (vx, vy) = _split_train_val(tr_x, tr_y, cfg.val_fraction, seed, max_train_images, max_val_images)
    prep = lambda a: _prepare(a, mean, std, resolution)  # noqa: E731
    return DataBundle(
        name=cfg.name,
        train=Split(prep(trx), torch.from_numpy(try_)),
        val=Split(prep(vx), torch.from_numpy(vy)),
        test=Split(prep(test_x), torch.from_numpy(test_y)),
        num_classes=10, in_channels=channels, resolution=resolution, sha256=sha, augment=cfg.augment)
