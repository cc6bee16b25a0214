import numpy as np
import pytest
import torch

from oneshot_bench.config import DataConfig
from oneshot_bench.data import augment_batch, load_data
from oneshot_bench.errors import ConfigError, DataError


def test_digits_is_the_offline_default():
    b = load_data(DataConfig(), resolution=8, seed=0)
    assert b.in_channels == 1 and b.num_classes == 10
    assert len(b.train) + len(b.val) + len(b.test) == 1797
    assert set(b.train.y.tolist()) == set(range(10))


def test_split_is_seeded_and_disjoint():
    a = load_data(DataConfig(), resolution=8, seed=0)
    b = load_data(DataConfig(), resolution=8, seed=1)
    assert not torch.equal(a.train.y, b.train.y)
    assert torch.equal(a.test.y, b.test.y)  # the test split never depends on the seed
    flat = lambda s: {tuple(r) for r in s.x.flatten(1).tolist()}  # noqa: E731
    assert not flat(a.train) & flat(a.test)


def test_cifar10_subset_loads_real_images(cifar_root):
    b = load_data(DataConfig(name="cifar10", root=str(cifar_root), val_fraction=0.2), resolution=32, seed=0)
    assert len(b.train) + len(b.val) == 5 * 1017 and len(b.test) == 1017
    assert b.test.y[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]  # real CIFAR-10 test order
    assert abs(b.train.x.mean().item()) < 0.1  # normalized with the CIFAR-10 channel statistics


def test_cifar10_missing_root_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("ONESHOT_CIFAR10_ROOT", raising=False)
    with pytest.raises(DataError, match="data.root"):
        load_data(DataConfig(name="cifar10"), resolution=8, seed=0)
    with pytest.raises(DataError, match="missing"):
        load_data(DataConfig(name="cifar10", root=str(tmp_path)), resolution=8, seed=0)


def test_unknown_dataset_lists_choices():
    with pytest.raises(ConfigError, match="data.name='mnist' is not allowed: choose one of digits, cifar10, imagenet"):
        load_data(DataConfig(name="mnist"), resolution=8, seed=0)


def test_imagenet_is_only_for_transfers():
    with pytest.raises(ConfigError, match=r"data=imagenet is for transfers.*\+transfer=imagenet_mobile"):
        load_data(DataConfig(name="imagenet"), resolution=8, seed=0)


def test_augmentation_is_a_padded_crop_or_its_mirror():
    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8) + 1
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        out = augment_batch(x, g)
        assert out.shape == x.shape
        padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
        for i in range(2):
            windows = [padded[i, :, r:r + 8, c:c + 8] for r in range(3) for c in range(3)]
            assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1)) for w in windows)


def test_augmentation_varies_between_samples():
    x = torch.randn(64, 3, 16, 16)
    out = augment_batch(x, torch.Generator().manual_seed(0))
    assert not np.allclose(out.numpy(), x.numpy())
