"""experiments/fasterseg.yaml end to end (CPU-sized): latency table ahead, pre-training, co-search
with LatencyRegularization and Distillation, teacher and student genotypes written."""

from pathlib import Path

import pytest
import torch

from lightning_nas.cli import NASCLI, main
from lightning_nas.genotypes import FasterSegGenotype, build_network, load

REPO = Path(__file__).resolve().parents[3]
TINY = ["layers=8", "Fch=2", "num_classes=6", "widths=[6,12]"]


@pytest.fixture
def table(tmp_path, monkeypatch) -> Path:
    """The table experiments/fasterseg.yaml names (tables/fasterseg_cpu.json), tiny space."""
    monkeypatch.chdir(tmp_path)
    args = ["latency", "build", "--space-config", str(REPO / "experiments/fasterseg.yaml")]
    for item in TINY:
        args += ["--space-arg", item]
    args += ["--input-size", "32", "32", "--warmup", "0", "--repeats", "1", "--no-progress"]
    args += ["--rounds", "1", "--min-run-time", "0", "--default-malloc"]  # not in this process
    args += ["--out", "tables/fasterseg_cpu.json", "--threads", "1"]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 0
    return tmp_path / "tables/fasterseg_cpu.json"


@pytest.mark.slow
def test_search_config_cpu_sized(table, tmp_path, synthetic_root):
    from callbacks import Distillation, LatencyRegularization
    from lightning_nas import genotypes
    from lightning_nas.spaces import FasterSegSpace

    # the recipe's latency unit comes from a reference genotype (the published student at
    # 6.414 ms); the tiny space cannot derive that 16-layer network, so a tiny reference here
    torch.manual_seed(1)
    tiny = FasterSegSpace(num_classes=6, layers=8, Fch=2, widths=(6, 12))
    reference = tmp_path / "reference.yaml"
    genotypes.save(tiny.derive(), reference)
    cli = NASCLI(
        args=[
            "fit",
            "-c",
            str(REPO / "experiments/fasterseg.yaml"),
            "-c",
            str(REPO / "experiments/data/synthetic.yaml"),
            "--trainer.max_epochs=2",
            "--model.init_args.arch_start_epoch=1",
            "--model.init_args.space.init_args.layers=8",
            "--model.init_args.space.init_args.Fch=2",
            "--model.init_args.space.init_args.widths=[6,12]",
            f"--data.init_args.root={synthetic_root}",
            "--data.init_args.num_train=16",
            "--data.init_args.num_val=8",
            "--data.init_args.image_size=32",
            "--data.init_args.batch_size=2",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.enable_progress_bar=false",
            f"--trainer.callbacks.reference_genotype={reference}",
        ]
    )
    module, trainer = cli.model, cli.trainer
    kinds = {type(cb) for cb in trainer.callbacks}
    assert LatencyRegularization in kinds and Distillation in kinds
    lat = next(cb for cb in trainer.callbacks if isinstance(cb, LatencyRegularization))
    dist = next(cb for cb in trainer.callbacks if isinstance(cb, Distillation))
    assert lat.table is not None and lat.table.input_size == (32, 32)
    assert dist.teacher is None and dist.phases == ("weight", "arch")  # co-search
    assert dist.reduction == "mean" and dist.ignore_index is None  # the release's KLDivLoss()
    # every latency in the release's milliseconds: table ms / (reference's table ms / 6.414)
    assert lat.reference_latency_ms == 6.414 and lat.fps_window == (155.0, 175.0)
    ref_ms = tiny.derived_latency(lat.table, genotypes.load(reference))
    assert lat.latency_unit_ms == pytest.approx(ref_ms / 6.414)
    assert tuple(trainer.datamodule.scales) == (0.75, 1.0, 1.25)  # train_scale_array
    space = module.space
    assert space.num_classes == 6 and space.sets == ("teacher", "student")
    assert space.ohem_thresh == 0.7
    a_opt = module.optimizers()[1]
    assert a_opt.defaults["lr"] == 3e-4 and a_opt.defaults["betas"] == (0.5, 0.999)
    # pre-training epoch 0 without architecture steps, search in epoch 1
    logged = trainer.logged_metrics
    assert "train/arch_loss/LatencyRegularization" in logged
    assert "train/arch_loss/Distillation" in logged and "train/weight_loss/Distillation" in logged
    assert float(logged["latency/expected_ms"]) > 0
    assert float(logged["latency/lambda"]) == pytest.approx(0.01)
    written = sorted(p.name for p in tmp_path.rglob("genotype*.yaml"))
    assert written == [
        "genotype.yaml",
        "genotype_epoch=000.yaml",
        "genotype_epoch=001.yaml",
        "genotype_teacher.yaml",
        "genotype_teacher_epoch=000.yaml",
        "genotype_teacher_epoch=001.yaml",
    ]
    student = load(next(tmp_path.rglob("genotype.yaml")))
    teacher = load(next(tmp_path.rglob("genotype_teacher.yaml")))
    assert isinstance(student, FasterSegGenotype) and student == space.derive()
    assert teacher == space.extra_genotypes()["teacher"] and teacher.stem_head_width == (12, 12)
    # BranchSelection scored both pairs on the validation set and the derivation used them
    assert "branch/miou_2-1" in logged and "branch/latency_ms_2-0" in logged
    assert float(space.branch_latency.min()) > 0
    assert float(logged["branch/latency_ms_2-1"]) == pytest.approx(
        space.derived_latency(lat.table, space.derive_pair((2, 1)))
    )
    assert student.stem_head_width == (8, 8) and student.lasts == space.selected_lasts()
    # the derived student builds and runs at the data's size
    net = build_network(student, num_classes=6, Fch=2).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 32, 32)).shape == (1, 6, 32, 32)


def test_retrain_config_cpu_sized(tmp_path, synthetic_root):
    from lightning_nas.networks import FasterSegNetwork

    cli = NASCLI(
        args=[
            "fit",
            "-c",
            str(REPO / "experiments/retrain_fasterseg.yaml"),
            "--trainer.max_steps=2",
            "--model.init_args.network.init_args.Fch=2",
            f"--data.init_args.root={synthetic_root}",
            "--data.init_args.num_train=8",
            "--data.init_args.num_val=4",
            "--data.init_args.image_size=32",
            "--data.init_args.batch_size=4",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.enable_progress_bar=false",
        ]
    )
    net = cli.model.network
    assert isinstance(net, FasterSegNetwork) and cli.trainer.global_step == 2
    assert net.genotype == load(REPO / "experiments/genotypes/fasterseg_cityscapes.yaml")
    assert cli.model.num_classes == 6  # linked from the synthetic data
    opt = cli.model.optimizers()
    assert opt.defaults["lr"] == 0.01 and opt.defaults["weight_decay"] == 5e-4
    assert "val/mIoU" in cli.trainer.logged_metrics
    # the release's losses: OHEM CE + 0.2 × the two auxiliary heads
    from lightning_nas.losses import OhemCrossEntropy

    assert isinstance(cli.model.criterion, OhemCrossEntropy) and cli.model.criterion.thresh == 0.7
    assert cli.model.aux_weights == (0.2, 0.2)
    assert "train/loss/aux" in cli.trainer.logged_metrics
    assert tuple(cli.datamodule.scales) == (0.75, 1.0, 1.25)  # config_train.py train_scale_array
