"""Front maths on hand-made points: the known front, hypervolume, contributions, knee."""

import pytest

from lightning_nas.strategies.pareto import (
    dominates,
    front_report,
    hypervolume,
    hypervolume_contributions,
    knee_points,
    pareto_front,
)

MAX_MIN = ["maximize", "minimize"]  # mIoU up, latency down
POINTS = [
    (0.70, 40.0),  # 0 front
    (0.60, 20.0),  # 1 front
    (0.50, 30.0),  # 2 dominated by 1
    (0.40, 10.0),  # 3 front
    (0.70, 45.0),  # 4 dominated by 0
    (0.60, 20.0),  # 5 duplicate of 1
    (0.30, 12.0),  # 6 dominated by 3
]


def test_dominance_and_the_front():
    assert dominates((0.6, 20.0), (0.5, 30.0), MAX_MIN)
    assert not dominates((0.6, 20.0), (0.6, 20.0), MAX_MIN)
    assert not dominates((0.7, 40.0), (0.4, 10.0), MAX_MIN)
    assert pareto_front(POINTS, MAX_MIN) == [0, 1, 3]
    assert pareto_front([(1.0, 1.0)], MAX_MIN) == [0]


def test_hypervolume_by_hand():
    # reference (mIoU 0, 50 ms): rectangles of the staircase (in minimised coordinates)
    #   (0.4, 10): 0.4 × (50 - 10) = 16; (0.6, 20) adds 0.2 × (50 - 20) = 6;
    #   (0.7, 40) adds 0.1 × (50 - 40) = 1  → 23
    assert hypervolume(POINTS, MAX_MIN, reference=(0.0, 50.0)) == pytest.approx(23.0)
    # dominated points add nothing; points beyond the reference count nothing
    assert hypervolume([POINTS[i] for i in (0, 1, 3)], MAX_MIN, (0.0, 50.0)) == pytest.approx(23.0)
    assert hypervolume([(0.5, 60.0)], MAX_MIN, (0.0, 50.0)) == 0.0
    front = [POINTS[i] for i in (0, 1, 3)]
    # exclusive parts: (0.7,40): 0.1×10 = 1; (0.6,20): 0.2×20 = 4; (0.4,10): 0.4×10 = 4
    assert hypervolume_contributions(front, MAX_MIN, (0.0, 50.0)) == pytest.approx([1, 4, 4])
    with pytest.raises(ValueError, match="two objectives"):
        hypervolume([(1, 2, 3)], ["maximize"] * 3, (0, 0, 0))


def test_knee_is_the_point_farthest_from_the_extremes_line():
    # normalised front: (0.7,40)→(0,1), (0.6,20)→(1/3,1/3), (0.4,10)→(1,0) in minimised axes;
    # the middle point is the knee
    assert knee_points(POINTS, MAX_MIN, k=1) == [1]
    assert sorted(knee_points(POINTS, MAX_MIN, k=3)) == [0, 1, 3]


def test_front_report_writes_csv_plots_and_hypervolume_per_generation(tmp_path):
    groups = [
        ("stage 1", [{"values": list(p), "label": f"s1-{i}"} for i, p in enumerate(POINTS[:4])]),
        ("stage 2", [{"values": list(p), "label": f"s2-{i}", "flops": 1.0}
                     for i, p in enumerate(POINTS[4:])]),
    ]  # fmt: skip
    report = front_report(groups, ["val/mIoU", "latency_ms"], MAX_MIN, tmp_path, 2)
    assert [p["label"] for p in report["front"]] == ["s1-3", "s1-1", "s1-0"]
    assert len(report["hypervolume"]) == 4 and report["hypervolume"] == sorted(
        report["hypervolume"]
    )
    rows = (tmp_path / "front.csv").read_text().splitlines()
    assert rows[0] == "group,label,val/mIoU,latency_ms,on_front,flops" and len(rows) == 8
    assert (tmp_path / "front.png").stat().st_size > 0
    assert (tmp_path / "hypervolume.png").stat().st_size > 0
    assert (tmp_path / "hypervolume.csv").read_text().splitlines()[
        0
    ] == "generation,points,hypervolume"
