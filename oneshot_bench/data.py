"""Datasets held on the device as tensors, with batched on-device augmentation.

Small NAS budgets are dominated by per-batch Python overhead, so the whole split lives on the device once
(CIFAR-10 at 32 px is 600 MB as float32) and augmentation is a few tensor ops over the batch.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .config import DataConfig, Dataset
from .device import host_to
from .errors import ConfigError, DataError, UserError
from .file_kinds import MISSING, kind_of, require_regular
from .os_errors import check_size, shown, user_error

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
# an official batch file is 31,035,704 bytes (10,000 images of 3,072 bytes and their labels, pickled); twice that
# leaves room for re-pickled copies, and anything larger is refused by its size before it is hashed or read
CIFAR10_BATCH_MAX_BYTES = 2 * 31_035_704


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
        order = host_to(torch.randperm(n, generator=generator), data.y.device) if shuffle else torch.arange(
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
    oy = host_to(torch.randint(0, 2 * pad + 1, (b,), generator=generator), x.device)
    ox = host_to(torch.randint(0, 2 * pad + 1, (b,), generator=generator), x.device)
    rows = oy[:, None] + torch.arange(h, device=x.device)  # b x h
    cols = ox[:, None] + torch.arange(w, device=x.device)  # b x w
    flip = host_to(torch.rand(b, generator=generator) < 0.5, x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    bi = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]  # b x h x w x c
    return out.permute(0, 3, 1, 2)


def cutout_batch(x: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """Cutout (DeVries & Taylor 2017, as DARTS' final training uses it): per image, zero a `length` x `length`
    square centred at a uniform pixel, clipped at the borders."""
    if length <= 0:
        return x
    b, _, h, w = x.shape
    cy = host_to(torch.randint(0, h, (b,), generator=generator), x.device)
    cx = host_to(torch.randint(0, w, (b,), generator=generator), x.device)
    rows = torch.arange(h, device=x.device)[None, :]
    cols = torch.arange(w, device=x.device)[None, :]
    inside_y = (rows >= (cy - length // 2)[:, None]) & (rows < (cy - length // 2 + length)[:, None])
    inside_x = (cols >= (cx - length // 2)[:, None]) & (cols < (cx - length // 2 + length)[:, None])
    mask = ~(inside_y[:, :, None] & inside_x[:, None, :])  # b x h x w
    return x * mask[:, None, :, :].to(x.dtype)


def _prepare(x: np.ndarray, mean, std, resolution: int) -> torch.Tensor:
    t = torch.from_numpy(x).float()
    if t.shape[-1] != resolution:
        t = F.interpolate(t, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return ((t - m) / s).contiguous(memory_format=torch.channels_last)


# the fewest search-train images data.val_fraction may leave: one batch of the smallest batch size a shipped budget
# uses (conf/budget/*.yaml: 64), about 6 images per class. Below it a supernet trains on a handful of images and
# its ranking is noise, reported as a measurement; a deliberate budget.max_train_images under it lowers it to itself
MIN_TRAIN_IMAGES = 64


def check_train_split(pool: int, n_val: int, val_fraction: float, max_train: Optional[int]) -> None:
    """The search-train split data.val_fraction leaves holds at least MIN_TRAIN_IMAGES (or the budget's own smaller
    cap); else a ConfigError naming the split sizes and the largest val_fraction that would do."""
    need = min(MIN_TRAIN_IMAGES, max_train or MIN_TRAIN_IMAGES, pool)
    if pool - n_val < need:
        largest = math.floor((pool - need) / pool * 1000) / 1000
        raise ConfigError(f"data.val_fraction={val_fraction} leaves {pool - n_val:,} of the {pool:,} training images "
                          f"for search-train ({n_val:,} for search-val), and a search needs at least {need} to train "
                          f"on (one batch of the smallest shipped budget); lower data.val_fraction, to at most "
                          f"{largest} here (the default is 0.5).")


def _split_train_val(x, y, val_fraction: float, seed: int, max_train, max_val):
    perm = np.random.default_rng(seed).permutation(len(y))
    n_val = int(round(len(y) * val_fraction))
    check_train_split(len(y), n_val, val_fraction, max_train)
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    if max_train is not None:
        train_idx = train_idx[:max_train]
    if max_val is not None:
        val_idx = val_idx[:max_val]
    return (x[train_idx], y[train_idx]), (x[val_idx], y[val_idx])


def configured_root(cfg: DataConfig, example: str, holding: str) -> Path:
    """data.root, else the env var `cfg.root_env`; unset, a DataError saying what the folder must hold."""
    root = cfg.root or os.environ.get(cfg.root_env)
    if not root:
        raise DataError(f"data={cfg.name} needs a dataset folder: set data.root={example} ({holding}) or the env var "
                        f"{cfg.root_env}.")
    return Path(root).expanduser()


def root_fix(cfg: DataConfig, holding: str) -> str:
    """How to point at the right dataset folder, naming the setting the path came from: data.root, or the env var
    `cfg.root_env` when data.root is unset (a message saying "data.root" would send the user to a setting they
    never made)."""
    if cfg.root:
        return f"point data.root at the folder that holds {holding}"
    return (f"point the env var {cfg.root_env} (where this path came from: data.root is unset) at the folder that "
            f"holds {holding}, or set data.root=<that folder>")


CIFAR_HOLDING = "cifar-10-batches-py/"


def resolve_cifar_root(cfg: DataConfig) -> Path:
    path = configured_root(cfg, "/path/to/cifar", "the folder holding cifar-10-batches-py/; add data.download=true "
                                                  "to fetch it when online")
    try:
        return path / "cifar-10-batches-py" if (path / "cifar-10-batches-py").is_dir() else path
    except OSError as e:  # e.g. a path too long for the file system (ENAMETOOLONG)
        setting = "data.root" if cfg.root else cfg.root_env
        raise DataError(f"{setting}={shown(path)} cannot be used as a folder ({e.strerror or e}); "
                        f"{root_fix(cfg, CIFAR_HOLDING)}.") from None


def _input_error(path: Path, error: OSError) -> UserError:
    """An OS error on a CIFAR-10 file as one message naming it and the fix (os_errors), or a DataError."""
    return user_error(error, path, key="data.root") or DataError(
        f"{shown(path)} cannot be read ({error.strerror or error}); re-download it or point data.root elsewhere.")


def _check_batch_file(path: Path) -> None:
    """A batch file is a regular file (a FIFO would block its reader, /dev/zero never ends) of at most a batch's
    size, checked before it is opened."""
    try:
        require_regular(path, "put the real batch file there (re-download the dataset) or point data.root elsewhere",
                        DataError)
        check_size(path, CIFAR10_BATCH_MAX_BYTES, "a CIFAR-10 python batch (about 31 MB)",
                   "it is not a CIFAR-10 batch: re-download the dataset or point data.root elsewhere")
    except OSError as e:
        raise _input_error(path, e) from None


def check_batch_files(folder: Path, fix: str = f"point data.root at the folder that holds {CIFAR_HOLDING}") -> None:
    """The six batch files are under `folder`, each a regular file; else a DataError saying what is there instead
    (a missing folder, a file in place of the folder, a missing file, a FIFO, a device or a directory in place of
    a file) and the fix (`fix`: how to point at another folder). Nothing is opened."""
    try:
        kinds = {name: kind_of(folder / name) for name in CIFAR10_FILES}
        folder_kind = kind_of(folder)
    except OSError as e:  # permission on the folder, a path too long...
        raise _input_error(folder, e) from None
    if folder_kind == MISSING:
        raise DataError(f"the CIFAR-10 folder {shown(folder)} does not exist; {fix}, or set data.download=true "
                        f"when online.")
    if folder_kind is None:
        raise DataError(f"{shown(folder)} is a file, not the folder of the CIFAR-10 batches; {fix}.")
    odd = [(name, kind) for name, kind in kinds.items() if kind not in (None, MISSING)]
    if odd:
        name, kind = odd[0]
        others = f" ({len(odd) - 1} more batch file(s) likewise)" if len(odd) > 1 else ""
        raise DataError(f"CIFAR-10 file {shown(folder / name)} is {kind}, not a regular file{others}; put the real "
                        f"batch file there (re-download the dataset), or {fix}.")
    missing = [name for name, kind in kinds.items() if kind == MISSING]
    if missing:
        raise DataError(f"CIFAR-10 files {missing} are missing under {shown(folder)}; {fix}, or set "
                        f"data.download=true when online.")


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR-10 python batch and nothing else: only the globals real batch files reference (numpy's
    array reconstruction, ndarray, dtype, and _codecs.encode for byte strings) may be loaded, so a crafted file
    cannot run code (`pickle.loads` would call anything its file names)."""

    ALLOWED = {("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it references {module}.{name}, which a CIFAR-10 batch never does")
        if module == "numpy.core.multiarray":  # pickles from numpy < 2
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images N x 3 x 32 x 32 uint8, labels N int64) of one batch file, validated: a dict with `data` and
    `labels` (str or bytes keys), uint8 pixels, 3,072 values per image, one label in 0..9 per image."""
    _check_batch_file(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise _input_error(path, e) from None
    try:
        batch = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError,
            KeyError, OSError) as e:
        raise DataError(f"{path} is not a readable CIFAR-10 python batch ({e}). Re-download it.") from None
    if not isinstance(batch, dict):
        raise DataError(f"{path} holds a {type(batch).__name__}, not a CIFAR-10 batch dict. Re-download it.")
    # the official files have bytes keys; re-pickled copies (like the test subset) may have str keys
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    missing = {"data", "labels"} - set(batch)
    if missing:
        raise DataError(f"{path} lacks {sorted(missing)}; a CIFAR-10 batch has 'data' and 'labels'. Re-download it.")
    data, labels = batch["data"], np.asarray(batch["labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        kind = data.dtype if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: pixels are {kind}, not uint8 as in CIFAR-10. Re-download it.")
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: images have shape {data.shape}, not N x 3072 (3 x 32 x 32). Re-download it.")
    if labels.ndim != 1 or len(labels) != len(data) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: {labels.shape} labels of type {labels.dtype} for {len(data)} images; CIFAR-10 "
                        f"has one integer label per image. Re-download it.")
    if len(labels) and (labels.min() < 0 or labels.max() >= 10):
        raise DataError(f"{path}: labels range over {labels.min()}..{labels.max()}, not 0..9. Re-download it.")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def load_cifar10_batches(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """Read the official python batch format: (train_x, train_y, test_x, test_y, sha256 of the files)."""
    check_batch_files(folder)
    xs, ys = [], []
    for name in CIFAR10_FILES:
        data, labels = read_cifar_batch(folder / name)
        xs.append(data)
        ys.append(labels)
    return (np.concatenate(xs[:5]), np.concatenate(ys[:5]), xs[5], ys[5], cifar10_sha256(folder))


def cifar10_sha256(folder: Path) -> str:
    """sha256 over the six batch files, in order: the data's identity (checked before anything is unpickled)."""
    digest = hashlib.sha256()
    for name in CIFAR10_FILES:
        _check_batch_file(folder / name)
        try:
            with open(folder / name, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
        except OSError as e:
            raise _input_error(folder / name, e) from None
    return digest.hexdigest()


def _download_cifar(path: Path) -> None:
    import torchvision

    try:
        torchvision.datasets.CIFAR10(str(path.parent if path.name == "cifar-10-batches-py" else path), download=True)
    except Exception as e:
        raise DataError(f"downloading CIFAR-10 into {path} failed ({e}); copy the files there by hand.") from None


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images[:, None, :, :] / 16.0).astype(np.float32), d.target.astype(np.int64)


def cifar10_folder(cfg: DataConfig) -> Path:
    """The folder of the batch files, checked (check_batch_files, naming the setting the folder came from), and
    downloaded first when asked to and missing (never over a FIFO or directory in place of a file: torchvision
    would open it to check it)."""
    folder = resolve_cifar_root(cfg)
    if cfg.download and kind_of(folder / "data_batch_1") == MISSING:
        _download_cifar(folder)
    check_batch_files(folder, root_fix(cfg, CIFAR_HOLDING))
    return folder


def data_sha256(cfg: DataConfig) -> str:
    """The data's identity, computed without decoding it: the sha256 of the raw files (CIFAR-10, checked before
    anything is unpickled) or of the bundled arrays (digits). Part of every run's id."""
    if cfg.name == Dataset.imagenet:
        raise ConfigError(IMAGENET_SEARCH)
    if cfg.name == Dataset.cifar10:
        return cifar10_sha256(cifar10_folder(cfg))
    x, y = _digits()
    return hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()


def check_fits_memory(images: int, channels: int, resolution: int) -> None:
    """The splits a search holds as float32 at `resolution` must fit in this machine's memory: refused before they
    are resized (torch would otherwise try to allocate it all, or the machine would swap)."""
    need = images * channels * resolution**2 * 4
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > memory:
        raise DataError(f"budget.resolution={resolution} makes the {images:,} images of this run "
                        f"{need / 2**30:,.1f} GiB as float32, more than this machine's {memory / 2**30:,.1f} GiB of "
                        f"memory; lower budget.resolution, or cap the images with budget.max_train_images and "
                        f"budget.max_val_images.")


IMAGENET_SEARCH = ("data=imagenet is for transfers: a search holds its images on the device, and ImageNet does not "
                   "fit there. Search on data=cifar10 and transfer the found cell, as the papers do: python run.py "
                   "+transfer=imagenet_mobile transfer.source=<run id> data.root=<imagenet folder>.")


def load_data(cfg: DataConfig, *, resolution: int, seed: int, max_train_images: Optional[int] = None,
              max_val_images: Optional[int] = None) -> DataBundle:
    if cfg.name == Dataset.imagenet:
        raise ConfigError(IMAGENET_SEARCH)
    if cfg.name == Dataset.digits:
        x, y = _digits()
        # fixed test split (20%) independent of the run seed, so final accuracies are comparable across seeds
        perm = np.random.default_rng(12345).permutation(len(y))
        n_test = len(y) // 5
        test_x, test_y, tr_x, tr_y = x[perm[:n_test]], y[perm[:n_test]], x[perm[n_test:]], y[perm[n_test:]]
        mean, std, channels = (float(x.mean()),), (float(x.std()),), 1
        sha = hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()
    else:
        tr_x, tr_y, test_x, test_y, sha = load_cifar10_batches(cifar10_folder(cfg))
        tr_x, test_x = tr_x.astype(np.float32) / 255.0, test_x.astype(np.float32) / 255.0
        mean, std, channels = CIFAR10_MEAN, CIFAR10_STD, 3
    (trx, try_), (vx, vy) = _split_train_val(tr_x, tr_y, cfg.val_fraction, seed, max_train_images, max_val_images)
    check_fits_memory(len(try_) + len(vy) + len(test_y), channels, resolution)
    prep = lambda a: _prepare(a, mean, std, resolution)  # noqa: E731
    return DataBundle(
        name=str(cfg.name),
        train=Split(prep(trx), torch.from_numpy(try_)),
        val=Split(prep(vx), torch.from_numpy(vy)),
        test=Split(prep(test_x), torch.from_numpy(test_y)),
        num_classes=10, in_channels=channels, resolution=resolution, sha256=sha, augment=cfg.augment)
