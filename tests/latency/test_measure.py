"""Timing routine and op builders (structural facts only; no wall-clock thresholds)."""

import pytest
import torch

from lightning_nas.latency import LatencyTable, OpConfig, OpTimer, build_op, measure_module
from lightning_nas.latency.blocks import BLOCKS
from lightning_nas.latency.measure import dtype_name
from lightning_nas.methods.autodeeplab.genotype import AUTODEEPLAB_PRIMITIVES
from lightning_nas.methods.darts.genotype import DARTS_PRIMITIVES


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("op", sorted(set(DARTS_PRIMITIVES + AUTODEEPLAB_PRIMITIVES) - {"none"}))
def test_candidate_ops_build_with_their_input_shapes(op, stride):
    module, shapes = build_op(OpConfig(op, 4, 4, 9, 7, stride))
    out = module(*[torch.randn(2, *s) for s in shapes])
    assert tuple(out.shape) == (2, 4, 5 if stride == 2 else 9, 4 if stride == 2 else 7)


@pytest.mark.parametrize(
    ("config", "out_shape"),
    [
        (OpConfig("conv3x3_bn", 3, 12, 9, 9, 2), (12, 5, 5)),
        (OpConfig("relu_conv1x1_bn", 12, 4, 9, 9), (4, 9, 9)),
        (OpConfig("factorized_reduce", 12, 8, 9, 9, 2), (8, 5, 5)),
        (OpConfig("relu_conv1x1", 16, 5, 3, 3), (5, 3, 3)),
        (OpConfig("bilinear_upsample", 5, 5, 9, 10, 4), (5, 9, 10)),
        (OpConfig("add", 4, 4, 6, 6), (4, 6, 6)),
        (OpConfig("concat", 4, 12, 6, 6), (12, 6, 6)),
    ],
)
def test_blocks_build(config, out_shape):
    assert config.op in BLOCKS
    module, shapes = build_op(config)
    assert tuple(module(*[torch.randn(1, *s) for s in shapes]).shape[1:]) == out_shape


def test_build_op_rejects_unknown_and_inconsistent_configs():
    with pytest.raises(ValueError, match="unknown op 'warp_drive'.*sep_conv_3x3"):
        build_op(OpConfig("warp_drive", 4, 4, 8, 8))
    with pytest.raises(ValueError, match="C_in == C_out"):
        build_op(OpConfig("sep_conv_3x3", 4, 8, 8, 8))
    with pytest.raises(ValueError, match="latency is 0"):
        build_op(OpConfig("none", 4, 4, 8, 8))
    with pytest.raises(ValueError, match="multiple of C_in"):
        build_op(OpConfig("concat", 4, 6, 8, 8))


def test_builders_are_asked_first_and_none_means_not_mine():
    asked = []

    def mine(config):
        asked.append(config.op)
        return (torch.nn.Identity(), [(4, 3, 3)]) if config.op == "my_op" else None

    module, shapes = build_op(OpConfig("my_op", 4, 4, 3, 3), (mine,))
    assert isinstance(module, torch.nn.Identity) and shapes == [(4, 3, 3)]
    module, _ = build_op(OpConfig("conv1x1", 4, 2, 3, 3), (mine,))  # a shared block
    assert isinstance(module, torch.nn.Conv2d) and asked == ["my_op", "conv1x1"]
    with pytest.raises(ValueError, match="unknown op 'my_op'.*latency_op"):
        build_op(OpConfig("my_op", 4, 4, 3, 3))  # without the builder
    timer = OpTimer("cpu", warmup=0, repeats=1, builders=(mine,))
    assert timer(OpConfig("my_op", 4, 4, 3, 3)) >= 0.0
    table = LatencyTable.build(
        [OpConfig("my_op", 4, 4, 3, 3)], input_size=(3, 3), progress=False, builders=(mine,),
        warmup=0, repeats=1,
    )  # fmt: skip
    assert "my_op|Cin=4|Cout=4|H=3|W=3|stride=1" in table


def test_measure_module_restores_mode_and_counts_calls():
    calls = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            calls.append((self.training, torch.is_inference_mode_enabled()))
            return x

    probe = Probe().train()
    ms = measure_module(probe, [torch.zeros(1)], warmup=2, repeats=3, number=4)
    assert ms >= 0.0
    assert len(calls) == 2 + 3 * 4
    assert all(c == (False, True) for c in calls)  # eval mode, inference mode
    assert probe.training
    with pytest.raises(ValueError, match="repeats >= 1"):
        measure_module(probe, [torch.zeros(1)], repeats=0)


def test_a_large_convolution_measures_slower_than_the_identity():
    timer = OpTimer("cpu", warmup=1, repeats=5)
    heavy = timer(OpConfig("sep_conv_5x5", 32, 32, 48, 48))
    light = timer(OpConfig("skip_connect", 32, 32, 48, 48))
    assert heavy > light >= 0.0


def test_op_timer_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    OpTimer(warmup=0, repeats=1)(OpConfig("sep_conv_3x3", 4, 4, 8, 8))
    assert torch.equal(torch.rand(3), expected)


def test_real_table_build_on_cpu(tmp_path):
    configs = [OpConfig("max_pool_3x3", 4, 4, 8, 8), OpConfig("add", 4, 4, 8, 8)]
    table = LatencyTable.build(
        configs, input_size=(8, 8), warmup=1, repeats=2, progress=True, dtype="float64"
    )
    assert table.dtype == "float64" and table.num_threads == 1
    assert all(table[c] >= 0.0 for c in configs)
    assert LatencyTable.load(table.save(tmp_path / "t.json"), dtype=torch.float64).entries


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_timer_synchronises():
    ms = OpTimer("cuda", warmup=2, repeats=3)(OpConfig("sep_conv_3x3", 16, 16, 64, 64))
    assert ms > 0.0


def test_dtype_name():
    assert dtype_name(torch.float16) == dtype_name("float16") == "float16"
    with pytest.raises(ValueError, match="unknown dtype"):
        dtype_name("float7")
