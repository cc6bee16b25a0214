"""ImageNet, or any dataset in its class-folder layout (`<root>/train/<class>/<image>`, `<root>/val/<class>/<image>`),
streamed from disk by torchvision's ImageFolder and DataLoader workers: unlike the small datasets of data.py it does
not fit on the device. The transforms are DARTS' (train_imagenet.py): RandomResizedCrop, horizontal flip,
ColorJitter(0.4, 0.4, 0.4, 0.2) for training; resize to 256/224 of the crop side and centre crop for evaluation;
ImageNet's channel mean and std.

The folder is checked before any work (layout, identical class lists in train/ and val/, at least one image per
class and split), and named by the sha256 of its listing (every image's relative path and size): hashing the
contents of ImageNet's 1.3 million files would take longer than a short transfer.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .config import DataConfig
from .data import configured_root
from .errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # ImageFolder's
SPLITS = ("train", "val")


@dataclass(frozen=True)
class ImageFolderData:
    """A checked class-folder dataset: where it is, its classes and image lists, and the hash of its listing."""

    root: Path
    classes: tuple[str, ...]
    images: dict[str, list[tuple[str, int]]]  # split -> (path, class index), sorted as ImageFolder sorts them
    sha256: str

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _split_images(folder: Path) -> dict[str, list[tuple[str, int]]]:
    """class name -> [(image path, size in bytes)], sorted; only files with an image extension count."""
    out: dict[str, list[tuple[str, int]]] = {}
    try:
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if not entry.is_dir():
                continue
            files = sorted((f.path, f.stat().st_size) for f in os.scandir(entry.path)
                           if f.is_file() and f.name.lower().endswith(IMAGE_EXTENSIONS))
            out[entry.name] = files
    except OSError as e:
        raise DataError(f"cannot list {e.filename or folder} ({e.strerror or e}); make the dataset folder "
                        f"readable.") from None
    return out


def inspect_folder(cfg: DataConfig) -> ImageFolderData:
    """The dataset under data.root, checked: a DataError naming the folder, the problem and the fix otherwise."""
    root = configured_root(cfg, "/path/to/imagenet", "holding train/ and val/, one sub-folder per class")
    if not root.is_dir():
        raise DataError(f"data.root={str(root)!r} is not a folder; point it at the dataset folder holding train/ "
                        f"and val/.")
    listing: dict[str, dict[str, list[tuple[str, int]]]] = {}
    for split in SPLITS:
        folder = root / split
        if not folder.is_dir():
            raise DataError(f"{folder} is missing: data=imagenet expects {root}/train/<class>/<images> and "
                            f"{root}/val/<class>/<images> (the validation images sorted into class folders, e.g. "
                            f"with the usual valprep.sh).")
        listing[split] = _split_images(folder)
        if not listing[split]:
            raise DataError(f"{folder} has no class folders; put each class's images in {folder}/<class>/.")
        empty = [name for name, files in listing[split].items() if not files]
        if empty:
            raise DataError(f"{folder}/{empty[0]} holds no images ({len(empty)} empty class folder(s)); every class "
                            f"needs at least one {'/'.join(IMAGE_EXTENSIONS[:3])} file, or remove the folder.")
    train_classes, val_classes = list(listing["train"]), list(listing["val"])
    if train_classes != val_classes:
        only = sorted(set(train_classes) ^ set(val_classes))
        raise DataError(f"{root}: train/ and val/ have different class folders (e.g. {only[:3]}; "
                        f"{len(train_classes)} vs {len(val_classes)}); both need the same classes.")
    digest = hashlib.sha256()
    images: dict[str, list[tuple[str, int]]] = {}
    for split in SPLITS:
        images[split] = []
        for index, name in enumerate(train_classes):
            for path, size in listing[split][name]:
                digest.update(f"{os.path.relpath(path, root)}\t{size}\n".encode())
                images[split].append((path, index))
    return ImageFolderData(root, tuple(train_classes), images, digest.hexdigest())


def _load_rgb(path: str):
    """One image as RGB; an unreadable file is a DataError naming it (not a PIL traceback from a worker)."""
    from PIL import Image

    try:
        with open(path, "rb") as f:
            return Image.open(f).convert("RGB")
    except Exception as e:  # noqa: BLE001 - PIL raises many types (OSError, SyntaxError, DecompressionBombError...)
        raise DataError(f"{path} is not a readable image ({type(e).__name__}: {e}); replace or remove it.") from None


class _Images(torch.utils.data.Dataset):
    def __init__(self, samples: list[tuple[str, int]], transform) -> None:
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        return self.transform(_load_rgb(path)), label


def transforms_for(resolution: int) -> tuple:
    """(train transform, evaluation transform) at a crop side of `resolution` px, as DARTS trains ImageNet."""
    from torchvision import transforms as T

    normalize = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train = T.Compose([T.RandomResizedCrop(resolution), T.RandomHorizontalFlip(),
                       T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2), T.ToTensor(), normalize])
    evaluate = T.Compose([T.Resize(round(resolution * 256 / 224)), T.CenterCrop(resolution), T.ToTensor(), normalize])
    return train, evaluate


def subset(samples: list[tuple[str, int]], limit: Optional[int], seed: int) -> list[tuple[str, int]]:
    """At most `limit` samples: a fixed seeded choice (the same for every epoch and every resume), in file order."""
    if limit is None or limit >= len(samples):
        return samples
    keep = np.sort(np.random.default_rng(seed).permutation(len(samples))[:limit])
    return [samples[i] for i in keep]


def loader(samples: list[tuple[str, int]], transform, batch_size: int, workers: int, *, shuffle: bool,
           seed: int, pin_memory: bool) -> torch.utils.data.DataLoader:
    """Batches of `samples`; the order and the augmentation draws follow `seed` and the number of workers (each
    worker draws from its own seeded generator), so a resumed epoch with the same workers repeats them."""
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(_Images(samples, transform), batch_size=batch_size, shuffle=shuffle,
                                       num_workers=workers, pin_memory=pin_memory, generator=generator,
                                       persistent_workers=False, drop_last=False)


def worker_error(error: Exception) -> Optional[DataError]:
    """The DataError a DataLoader worker raised (re-raised by the DataLoader with the worker's traceback in its
    message), reduced to its own message; None for any other error."""
    if not isinstance(error, DataError):
        return None
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    last = lines[-1] if lines else str(error)
    prefix = f"{DataError.__module__}.{DataError.__name__}: "
    return DataError(last.split(prefix, 1)[1] if prefix in last else last)
