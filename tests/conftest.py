"""Shared fixtures: one intra-op thread per test, a tiny synthetic dataset rendered once."""

import os

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Two pytest-xdist workers share two cores: more threads per process (and per subprocess a
# test starts, which inherits this) only stall each other. Set before torch is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread in every test (restored after a test that changes it)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A tiny synthetic dataset on disk (16 train / 8 val images of 32×32)."""
    from lightning_nas.data import SyntheticDataModule

    root = tmp_path_factory.mktemp("synthetic")
    SyntheticDataModule(root=str(root), num_train=16, num_val=8, image_size=32).prepare_data()
    return str(root)
