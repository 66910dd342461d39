"""Second-order search over a stochastic space: one frozen sample per unrolled step.

FasterSeg draws Gumbel widths on every forward. The finite-difference Hessian-vector product of
the unrolled gradient, ``(g⁺ − g⁻) / 2ε``, is only meaningful if ``g⁺`` and ``g⁻`` are gradients
of the same subnetwork; otherwise the sampling noise is divided by a tiny ε. Before the fix each
call of the training-loss closure drew new widths (a different loss at the same weights).
"""

import lightning.pytorch as pl
import torch

import lightning_nas.search as search_mod
from lightning_nas.data import SyntheticDataModule
from lightning_nas.search import SearchModule
from lightning_nas.spaces.fasterseg import FasterSegSpace


def _fit(tmp_path, wrapper) -> SearchModule:
    torch.manual_seed(0)
    space = FasterSegSpace(num_classes=6, layers=8, Fch=4, widths=(6, 12), ohem_thresh=None)
    module = SearchModule(
        space,
        weight_optimizer={"class_path": "torch.optim.SGD", "init_args": {"lr": 0.05}},
        unrolled=True,
    )
    # 64 px: the 1/32 maps are 2×2, so BatchNorm never normalises over two values only
    data = SyntheticDataModule(
        root=str(tmp_path / "data"),
        num_train=8,
        num_val=4,
        image_size=64,
        search=True,
        batch_size=4,
    )
    original = search_mod.unrolled_arch_gradient
    search_mod.unrolled_arch_gradient = wrapper(original)
    try:
        pl.Trainer(
            default_root_dir=tmp_path,
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
            max_steps=2,
            limit_val_batches=0,
        ).fit(module, data)
    finally:
        search_mod.unrolled_arch_gradient = original
    return module


def test_every_training_loss_call_sees_the_same_sample(tmp_path) -> None:
    seen = []

    def wrapper(original):
        def call(train_loss, val_loss, *args, **kwargs):
            with torch.no_grad():
                seen.append([float(train_loss()) for _ in range(3)])
            return original(train_loss, val_loss, *args, **kwargs)

        return call

    _fit(tmp_path, wrapper)
    assert seen
    for losses in seen:  # the same weights, the same batch: the same subnetwork → equal losses
        assert losses[0] == losses[1] == losses[2]
