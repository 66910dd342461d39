"""Shared fixtures: a tiny synthetic dataset rendered once per session."""

import os

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A tiny synthetic dataset on disk (16 train / 8 val images of 32×32)."""
    from lightning_nas.data import SyntheticDataModule

    root = tmp_path_factory.mktemp("synthetic")
    SyntheticDataModule(root=str(root), num_train=16, num_val=8, image_size=32).prepare_data()
    return str(root)
