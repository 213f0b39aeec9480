from pathlib import Path

import numpy as np
import pytest
from helpers import write_csv, write_png

from ml.data import SplitPlan, assign_splits, load_dataset, write_labels_csv
from ml.errors import DataError


def _img(v: int = 120, shape: tuple[int, int] = (32, 40)) -> np.ndarray:
    return np.full((*shape, 3), v, np.uint8)


def test_format_a_reads_labels_masks_and_extra_columns(tiny_demo: Path) -> None:
    ds = load_dataset(tiny_demo)
    assert len(ds) == 16 + 6 + 6 + 4 + 8 + 4
    assert ds.extra_columns == ("defect_type",)
    assert ds.select("train").counts() == {"normal": 16, "mask": 6, "image": 0}
    assert all(s.image.is_file() for s in ds.samples)


def test_every_problem_is_reported_with_row_and_file(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png", _img())
    write_png(tmp_path / "b.png", _img())
    write_png(tmp_path / "c.png", _img())
    write_png(tmp_path / "small.png", np.zeros((10, 10), np.uint8))
    write_png(tmp_path / "empty.png", np.zeros((32, 40), np.uint8))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n garbage")
    write_csv(
        tmp_path / "labels.csv",
        [
            ["a.png", 1, "small.png", 1, "train"],  # mask size differs
            ["b.png", 2, "", "", "train"],  # label not 0/1
            ["c.png", 1, "empty.png", 1, "train"],  # all-zero mask with has_mask=1
            ["missing.png", 0, "", "", "train"],  # missing image
            ["broken.png", 0, "", "", "train"],  # undecodable
            ["a.png", 1, "small.png", 1, "test"],  # duplicate row
        ],
    )
    with pytest.raises(DataError) as err:
        load_dataset(tmp_path)
    text = str(err.value)
    assert "row 3 (b.png): label must be 0 or 1" in text  # csv parse problems come first
    # fix the label error to see the file-level problems, all of them at once
    write_csv(
        tmp_path / "labels.csv",
        [
            ["a.png", 1, "small.png", 1, "train"],
            ["c.png", 1, "empty.png", 1, "train"],
            ["missing.png", 0, "", "", "train"],
            ["broken.png", 0, "", "", "train"],
            ["a.png", 1, "small.png", 1, "test"],
        ],
    )
    with pytest.raises(DataError) as err:
        load_dataset(tmp_path)
    problems = err.value.problems
    assert len(problems) == 5, problems
    joined = "\n".join(problems)
    assert "row 2" in joined and "small.png is 10x10 but the image is 40x32" in joined
    assert "row 3" in joined and "all-zero mask" in joined
    assert "row 4" in joined and "image file not found" in joined
    assert "row 5" in joined and "cannot decode" in joined
    assert "row 6" in joined and "duplicate of row 2" in joined


def test_missing_columns_and_unknown_layout(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("image,label\nx.png,0\n")
    with pytest.raises(DataError, match="missing required column"):
        load_dataset(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="not a dataset"):
        load_dataset(empty)


def test_has_mask_defaults_and_image_level_defects(tmp_path: Path) -> None:
    write_png(tmp_path / "n.png", _img())
    write_png(tmp_path / "d.png", _img())
    write_csv(tmp_path / "labels.csv", [["n.png", 0, "", "", "train"], ["d.png", 1, "", "", "train"]])
    ds = load_dataset(tmp_path)
    normal, defect = ds.samples
    assert normal.pixels_known and normal.label_kind == "normal"
    assert not defect.pixels_known and defect.label_kind == "image"


def test_mvtec_layout_is_detected(tmp_path: Path) -> None:
    write_png(tmp_path / "train/good/000.png", _img())
    write_png(tmp_path / "test/good/000.png", _img())
    write_png(tmp_path / "test/crack/000.png", _img())
    m = np.zeros((32, 40), np.uint8)
    m[3:6, 3:9] = 255
    write_png(tmp_path / "ground_truth/crack/000_mask.png", m)
    ds = load_dataset(tmp_path)
    assert ds.source == "mvtec"
    assert [(s.split, s.label, s.pixels_known) for s in ds.samples] == [
        ("train", 0, True),
        ("test", 1, True),
        ("test", 0, True),
    ]


def test_split_is_seeded_grouped_and_thins_labels(tiny_demo: Path, tmp_path: Path) -> None:
    ds = load_dataset(tiny_demo)
    plan = SplitPlan(seed=1, val_fraction=0.2, test_fraction=0.3, keep_existing=False, train_masks=2)
    a, b = assign_splits(ds, plan), assign_splits(ds, plan)
    assert [s.split for s in a.samples] == [s.split for s in b.samples]
    train = a.select("train")
    assert train.counts()["mask"] == 2 and train.counts()["image"] > 0
    grouped = assign_splits(ds, SplitPlan(seed=0, keep_existing=False, group_pattern=r"^(\w+?)_"))
    by_prefix: dict[str, set[str]] = {}
    for s in grouped.samples:
        by_prefix.setdefault((s.image.name.split("_")[0], s.label), set()).add(s.split)
    assert all(len(v) == 1 for v in by_prefix.values())
    out = tmp_path / "sub" / "labels.csv"
    write_labels_csv(a, out)
    again = load_dataset(out)
    assert [(s.image.resolve(), s.split, s.has_mask) for s in again.samples] == [
        (s.image.resolve(), s.split, s.has_mask) for s in a.samples
    ]
    dropped = assign_splits(ds, SplitPlan(seed=0, train_defects=0))
    assert dropped.select("train").counts() == {"normal": 16, "mask": 0, "image": 0}


def test_generated_demo_file_names_do_not_give_the_answer_away(tmp_path: Path) -> None:
    """Label Studio shows annotators the image's path: it must not name the defect."""
    import csv

    from ml.demo_data import DemoSpec, generate

    csv_path = generate(tmp_path, DemoSpec(2, 2, 1, 1, 1, 1, size=32, seed=1))
    rows = list(csv.DictReader(csv_path.open()))
    kinds = {r["defect_type"] for r in rows} | {"good", "normal", "defect", "train", "val", "test"}
    assert len(kinds) > 6  # the defect types are in the CSV, where they belong
    for r in rows:
        assert not any(k in Path(r["file"]).name for k in kinds), r["file"]
