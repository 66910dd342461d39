"""Tests of the ONNX export: onnxruntime against PyTorch, the CLI, and its errors."""

from pathlib import Path

import lightning
import pytest
import torch

from lightning_nas.errors import ConfigError
from lightning_nas.export import (
    ExportMismatchError,
    check_onnx,
    export_main,
    export_onnx,
    load_network,
    measure_onnx,
)
from lightning_nas.genotypes import build_network
from lightning_nas.segmentation import SegmentationModule

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

GENOTYPES = Path(__file__).resolve().parents[1] / "experiments" / "genotypes"
DARTS = GENOTYPES / "darts_v2.yaml"
ADL = GENOTYPES / "autodeeplab_cityscapes.yaml"
FASTERSEG = GENOTYPES / "fasterseg_cityscapes.yaml"
DARTS_SMALL = {"C": 4, "layers": 3}
ADL_SMALL = {
    "filter_multiplier": 4,
    "aspp_channels": 8,
    "decoder_channels": 8,
    "low_level_channels": 4,
}
SIZE = (64, 64)


def _perturb(src: Path, dst: Path) -> None:
    """Copy an ONNX file, adding 0.5 to every value of its largest weight."""
    from onnx import numpy_helper

    model = onnx.load(str(src))
    init = max(model.graph.initializer, key=lambda t: numpy_helper.to_array(t).size)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) + 0.5, init.name))
    onnx.save(model, str(dst))


@pytest.fixture(scope="module")
def darts(tmp_path_factory):
    """A small DARTS-V2 network with BatchNorm statistics that are not the identity."""
    torch.manual_seed(0)
    net = build_network(DARTS, num_classes=5, **DARTS_SMALL)
    net.train()
    with torch.no_grad():
        net(torch.randn(4, 3, *SIZE))  # running statistics away from 0 / 1
    path = export_onnx(net, tmp_path_factory.mktemp("onnx") / "darts.onnx", SIZE, dynamic_size=True)
    return net.eval(), path


def test_darts_matches_pytorch_and_a_perturbed_file_does_not(darts, tmp_path) -> None:
    net, path = darts
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["logits"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "height", "width"]
    check = check_onnx(net, path, SIZE, atol=1e-4)
    assert check.ok and check.max_abs_diff <= 1e-4
    assert not net.training
    assert check_onnx(net, path, (40, 56), batch_size=2, seed=1).ok  # another size and batch

    bad = tmp_path / "perturbed.onnx"
    _perturb(path, bad)
    with pytest.raises(ExportMismatchError, match=r"differs from PyTorch by up to \d"):
        check_onnx(net, bad, SIZE, atol=1e-4)
    failed = check_onnx(net, bad, SIZE, atol=1e-4, strict=False)
    assert not failed.ok and failed.max_abs_diff > 1e-4

    assert measure_onnx(path, SIZE, warmup=1, repeats=2) > 0


@pytest.mark.slow
def test_autodeeplab_matches_pytorch(tmp_path) -> None:
    torch.manual_seed(0)
    net = build_network(ADL, num_classes=5, **ADL_SMALL).eval()
    path = export_onnx(net, tmp_path / "adl.onnx", SIZE)
    check = check_onnx(net, path, SIZE, atol=1e-4)
    assert check.ok and check.max_abs_diff <= 1e-4


def test_fasterseg_student_matches_pytorch(tmp_path) -> None:
    torch.manual_seed(0)
    net = build_network(FASTERSEG, num_classes=5, Fch=4).eval()
    path = export_onnx(net, tmp_path / "fasterseg.onnx", (64, 128))
    assert check_onnx(net, path, (64, 128), atol=1e-4).ok


# ----------------------------------------------------------------------------- CLI
def _cli_checkpoint(path: Path, net_args: dict) -> SegmentationModule:
    """A checkpoint as the CLI writes it: hyper-parameters that rebuild the network."""
    torch.manual_seed(1)
    network = build_network(**net_args)
    module = SegmentationModule(network)
    hparams = {
        "_class_path": "lightning_nas.segmentation.SegmentationModule",
        "_instantiator": "lightning.pytorch.cli.instantiate_module",
        "network": {"class_path": "lightning_nas.networks.DartsNetwork", "init_args": net_args},
        "num_classes": net_args["num_classes"],
    }
    torch.save(
        {
            "pytorch-lightning_version": lightning.__version__,
            "state_dict": module.state_dict(),
            "hyper_parameters": hparams,
        },
        path,
    )
    return module


def test_cli_exports_a_genotype(tmp_path, capsys) -> None:
    from lightning_nas.cli import main

    out = tmp_path / "sub" / "darts.onnx"
    args = ["export", str(DARTS), "--out", str(out), "--num-classes", "4", "--input-size", "32",
            "48", "--build-arg", "C=4", "--build-arg", "layers=3", "--warmup", "1", "--repeats",
            "2"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert out.is_file() and str(out) in text
    dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [1, 3, 32, 48]  # static unless --dynamic
    for expected in ("parameters", "max |onnx - torch|", "torch ", "onnxruntime ", "thread", "OK"):
        assert expected in text


def test_cli_exports_a_checkpoint_and_a_genotype_with_weights(tmp_path, capsys) -> None:
    args = {"genotype": str(DARTS), "num_classes": 3, "C": 4, "layers": 3}
    ckpt = tmp_path / "retrained.ckpt"
    expected = _cli_checkpoint(ckpt, args).network
    net = load_network(ckpt)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(),
                                                 expected.state_dict().values()))  # fmt: skip
    out = tmp_path / "ckpt.onnx"
    assert export_main([str(ckpt), "--out", str(out), "--input-size", "32", "32",
                        "--no-benchmark"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "DartsNetwork" in text and "OK" in text and "latency" not in text

    # the same weights through a genotype + --weights (a Python-made checkpoint's route)
    from_genotype = load_network(DARTS, num_classes=3, weights=ckpt, C=4, layers=3)
    for a, b in zip(from_genotype.state_dict().values(), net.state_dict().values()):
        assert torch.equal(a, b)


def test_cli_errors(darts, tmp_path, capsys, monkeypatch) -> None:
    out = str(tmp_path / "x.onnx")
    missing = tmp_path / "absent.yaml"
    assert export_main([str(missing), "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(missing) in err and "FileNotFoundError" in err

    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("kind: nasnet\nversion: 1\n")
    assert export_main([str(unknown), "--out", out]) == 2
    assert "nasnet" in capsys.readouterr().err

    assert export_main([str(DARTS), "--out", out, "--build-arg", "wings=2"]) == 2
    err = capsys.readouterr().err
    assert "wings" in err and err.count("\n") == 1

    weights = tmp_path / "absent.pt"
    assert export_main([str(DARTS), "--out", out, "--weights", str(weights)]) == 2
    assert str(weights) in capsys.readouterr().err

    python_ckpt = tmp_path / "python.ckpt"  # as saved from Python: the network is not in it
    torch.save({"pytorch-lightning_version": lightning.__version__, "state_dict": {},
                "hyper_parameters": {"num_classes": 3}}, python_ckpt)  # fmt: skip
    assert export_main([str(python_ckpt), "--out", out]) == 2
    assert "--weights" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="apply to a genotype"):
        load_network(python_ckpt, C=4)

    # onnxruntime disagreeing with PyTorch: exit 2 with the difference in the message
    import lightning_nas.export as export_module

    def export_perturbed(network, path, *args, **kwargs):  # the exporter "got it wrong"
        _perturb(darts[1], Path(path))
        return Path(path)

    monkeypatch.setattr(export_module, "export_onnx", export_perturbed)
    args = [str(DARTS), "--out", out, "--num-classes", "5", "--input-size", "64", "64",
            "--build-arg", "C=4", "--build-arg", "layers=3", "--no-benchmark"]  # fmt: skip
    assert export_main(args) == 2
    err = capsys.readouterr().err
    assert "ExportMismatchError" in err and "differs from PyTorch by up to" in err
