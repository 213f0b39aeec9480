"""The shared real datasets load and validate cleanly (skipped when ../shared/datasets is absent)."""

import pytest
from helpers import SHARED_DATASETS

from ml.data import load_dataset


@pytest.mark.datasets
@pytest.mark.parametrize("name,n_images,n_defective", [("magnetic-tile", 1344, 392), ("bsdata", 1104, 394)])
def test_shared_dataset_loads(name: str, n_images: int, n_defective: int) -> None:
    root = SHARED_DATASETS / name
    if not (root / "labels.csv").is_file():
        pytest.skip(f"{root} not found: the shared datasets are not on this machine")
    ds = load_dataset(root, check_pixels=False)
    assert len(ds) == n_images
    assert sum(s.label for s in ds.samples) == n_defective
    assert all(s.image.is_file() for s in ds.samples)
