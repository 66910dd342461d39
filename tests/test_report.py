"""``lightning-nas report``: one self-contained HTML page of a real (tiny) search run."""

import base64
import io
import re
from pathlib import Path

import pytest
from PIL import Image

from lightning_nas.baseline.output import write_results
from lightning_nas.baseline.stats import compare
from lightning_nas.cli import NASCLI, main
from lightning_nas.report import read_metrics, uniform_warning

REPO = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def search_run(tmp_path_factory, synthetic_root):
    run = tmp_path_factory.mktemp("search")
    space = {"C": 4, "layers": 3, "steps": 2, "multiplier": 2}
    NASCLI(
        args=[
            "fit", "-c", str(REPO / "experiments/darts.yaml"),
            "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.max_epochs=2",
            "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={run}",
            "--trainer.logger=CSVLogger", f"--trainer.logger.save_dir={run}",
            f"--data.init_args.root={synthetic_root}", "--data.init_args.num_train=16",
            "--data.init_args.num_val=8", "--data.init_args.image_size=32",
            "--data.init_args.batch_size=4",
            *[f"--model.init_args.space.init_args.{k}={v}" for k, v in space.items()],
        ]
    )  # fmt: skip
    return run


def _images(page: str) -> list[Image.Image]:
    found = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    images = []
    for data in found:
        img = Image.open(io.BytesIO(base64.b64decode(data)))
        img.load()  # decodes every pixel
        images.append(img)
    return images


def test_report_is_self_contained_and_every_image_decodes(search_run, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(search_run)])
    assert exit_info.value.code == 0
    page = (search_run / "report.html").read_text()
    assert not re.search(r'src="(?!data:)', page)  # nothing fetched from outside the file
    images = _images(page)
    # curves, final genotype drawing, first + last heatmaps of both α, the last cell drawing
    assert len(images) >= 4 and all(min(img.size) > 50 for img in images)
    for section in ("Metric curves", "Final genotype", "Parameters and Multi-Adds", "Config"):
        assert section in page
    assert "Params" in page or "params" in page
    # two epochs at DARTS' arch lr 3e-4: α never left uniform, and the page says so
    ratios = {k: v[-1][1] for k, v in read_metrics(next(search_run.rglob("metrics.csv"))).items()
              if k.endswith("entropy_ratio")}  # fmt: skip
    assert ratios and min(ratios.values()) > 0.99
    assert "the derived architecture is a random draw" in page
    assert "No baseline yet" in page


def test_report_embeds_the_baseline_comparison(search_run, tmp_path):
    out = search_run / "baseline"
    comparison = compare("val/mIoU", [0.61, 0.63, 0.62], [0.55, 0.58, 0.60, 0.64])
    result = {"comparison": comparison.to_dict(), "search_minutes": 2.0, "machine": "test"}
    write_results(out, result, [], comparison)
    path = tmp_path / "r.html"
    with pytest.raises(SystemExit):
        main(["report", str(search_run), "-o", str(path)])
    page = path.read_text()
    assert "Searched versus random" in page and "percentile 75" in page
    assert "0.6200 ± 0.0100" in page  # the searched mean ± std, as in the table
    assert len(_images(page)) >= 5


def test_uniform_warning_threshold():
    assert uniform_warning({}) is None
    assert uniform_warning({"a": 0.95}) is None
    assert "random draw" in uniform_warning({"a": 0.995, "b": 0.999})


def test_report_of_a_missing_run_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path / "nope")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "nope" in err and len(err.splitlines()) == 1
