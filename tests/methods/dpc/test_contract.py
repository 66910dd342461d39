"""DPC against the contracts: its network (DPC's space is discrete, not a supernet)."""

from contracts import GENOTYPES, NetworkContract

from lightning_nas.genotypes import load
from lightning_nas.methods.dpc.genotype import DPCGenotype


class TestDPCNetwork(NetworkContract):
    """The published cell on ``tu-mobilenetv2_100`` (OS 16: a 2×2 feature at 32×32), 16 channels."""

    network_kwargs = {"encoder_name": "tu-mobilenetv2_100", "channels": 16}

    def make_genotype(self):
        return load(GENOTYPES / "dpc_cityscapes.yaml")


class TestDPCNetworkEveryOp(NetworkContract):
    """A cell with every op type (1×1 conv, pyramid pooling with grids 1×1 and 2×8, rates)."""

    network_kwargs = {"encoder_name": "tu-mobilenetv2_100", "channels": 16}

    def make_genotype(self):
        return DPCGenotype(
            branches=(
                (-1, "conv1x1", (1, 1)),
                (0, "pyramid_pooling", (2, 8)),
                (-1, "sep_conv3x3", (21, 3)),
                (1, "pyramid_pooling", (1, 1)),
                (0, "sep_conv3x3", (9, 12)),
            )
        )
