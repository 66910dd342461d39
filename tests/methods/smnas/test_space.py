"""SM-NAS's spaces through real Optuna trials: one parameter per decision, inverses, mutations."""

from __future__ import annotations

import random

import optuna
import pytest

from lightning_nas import genotypes
from lightning_nas.methods.smnas.code import BASE_CODES, parse_code
from lightning_nas.methods.smnas.genotype import SMNASGenotype
from lightning_nas.methods.smnas.space import DILATING, ModularSpace, StructuralSpace
from lightning_nas.strategies import MutableSpace

SIZES = ((64, 64), (96, 96))


def study() -> optuna.Study:
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))


def test_structural_sampling_inverse_and_mutation():
    space = StructuralSpace(
        encoders=("resnet18", "mobilenet_v2"), decoders=("Unet", "FPN", "DeepLabV3Plus"),
        input_sizes=SIZES,
    )  # fmt: skip
    assert isinstance(space, MutableSpace)
    s = study()
    seen = set()
    for _ in range(60):
        trial = s.ask()
        g = space.sample(trial)
        assert set(trial.params) == {"encoder", "decoder", "input_size", "output_stride"}
        assert space.params(g) == trial.params or g.output_stride is None
        assert (g.output_stride is not None) == (g.decoder in DILATING)
        seen.add((g.encoder, g.decoder, g.input_size))
        s.tell(trial, 0.0)
    assert len(seen) == 12  # every combination reached
    s.enqueue_trial(space.params(g))
    assert space.sample(s.ask()) == g
    rng = random.Random(0)
    for _ in range(30):
        child = space.mutate(g, rng)
        changed = [
            k for k in ("encoder", "decoder", "input_size") if getattr(child, k) != getattr(g, k)
        ]
        assert len(changed) == 1 or (child.output_stride != g.output_stride)


def test_modular_sampling_inverse_mutation_and_seed():
    space = ModularSpace(
        decoders=("Unet", "FPN"), input_sizes=SIZES, base_widths=(16, 32),
        decoder_channels=(32, 64), max_blocks=3,
    )  # fmt: skip
    s = study()
    for _ in range(40):
        trial = s.ask()
        g = space.sample(trial)
        assert g.stage == 2 and g.norm == "gn_ws"
        stages = parse_code(g.code)
        assert len(stages) == 4 and all(1 <= len(st) <= 3 and st.count(2) <= 1 for st in stages)
        assert space.sample(optuna.trial.FixedTrial(space.params(g))) == g
        assert genotypes.from_dict(g.to_dict()) == g  # a valid, YAML-able genotype
        s.tell(trial, 0.0)
    rng = random.Random(1)
    parent = space.sample(optuna.trial.FixedTrial(space.params(g)))
    for _ in range(30):
        child = space.mutate(parent, rng)
        assert child.decoder == parent.decoder and child.base_width == parent.base_width
        assert child.code != parent.code
        assert all(len(st) <= 3 for st in parse_code(child.code))
    # a stage-1 structure starts stage 2 with its decoder, input size and its family's code
    stage1 = SMNASGenotype(encoder="resnet18", decoder="FPN", input_size=(96, 96))
    seed = space.seed_from(stage1)
    assert (seed.decoder, seed.input_size, seed.code) == ("FPN", (96, 96), BASE_CODES["resnet18"])
    assert seed.base_width == 16 and seed.decoder_channels == 32  # 64 / 256 not among the choices
    other = space.seed_from(
        SMNASGenotype(encoder="mobilenet_v2", decoder="Unet", input_size=(64, 64))
    )
    assert other.code == BASE_CODES["resnet18"]


def test_modular_params_refuse_codes_outside_the_space():
    space = ModularSpace(decoders=("Unet",), input_sizes=SIZES, max_blocks=3)
    g = SMNASGenotype(encoder="coded", decoder="Unet", input_size=(64, 64), base_width=64,
                      code="1111-21-21-21", norm="gn_ws")  # fmt: skip
    with pytest.raises(Exception, match="stage 1 is not in the space"):
        space.params(g)


def test_genotype_validation_names_the_field():
    with pytest.raises(genotypes.GenotypeError, match="decoder: unknown decoder 'UNet'"):
        SMNASGenotype(encoder="resnet18", decoder="UNet", input_size=(64, 64))
    with pytest.raises(genotypes.GenotypeError, match="code: code '11-21-21'.*3 stages"):
        SMNASGenotype(encoder="coded", decoder="Unet", input_size=(64, 64), base_width=64,
                      code="11-21-21")  # fmt: skip
    with pytest.raises(genotypes.GenotypeError, match="not divisible by 8 GroupNorm groups"):
        SMNASGenotype(encoder="coded", decoder="Unet", input_size=(64, 64), base_width=60,
                      code="11-21-21-21", norm="gn_ws")  # fmt: skip
    with pytest.raises(genotypes.GenotypeError, match="base_width: got 64 with encoder 'resnet18'"):
        SMNASGenotype(encoder="resnet18", decoder="Unet", input_size=(64, 64), base_width=64)
