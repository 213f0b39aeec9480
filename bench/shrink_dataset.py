"""Write a copy of a labelled dataset resized to the model's input size.

Training and evaluation resize every image to the input size anyway (``ml.images.resize_rgb``)
and every mask with ``ml.feature_cache.mask_to_feature_grid``; this does the same once, so
that a dataset of hundreds of megabytes travels to a training machine as a few dozen.
Metrics on the copy equal metrics on the original up to one JPEG re-encoding (quality 95).

    python bench/shrink_dataset.py runs/lite0/magnetic-tile/full.csv --out runs/small/magnetic-tile --size 256 256

The copy keeps every row, split and extra column of the source CSV; grayscale images stay
single-channel.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.data import load_dataset, load_sample_mask, write_labels_csv
from ml.feature_cache import mask_to_feature_grid
from ml.images import read_image, resize_rgb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="dataset folder or labels CSV")
    ap.add_argument(
        "--out",
        type=Path,
        required=True,
        help="folder for images/, masks/ and labels.csv",
    )
    ap.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), required=True)
    ap.add_argument("--quality", type=int, default=95, help="JPEG quality of the copies")
    args = ap.parse_args()
    size = (args.size[0], args.size[1])
    ds = load_dataset(args.data, check_pixels=False)
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    (args.out / "masks").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, s in enumerate(ds.samples):
        img = read_image(s.image)
        mask = load_sample_mask(s, img.shape[:2])
        small = resize_rgb(img, size)
        gray = bool((small[..., 0] == small[..., 1]).all() and (small[..., 1] == small[..., 2]).all())
        out_img = args.out / "images" / f"{i:05d}_{s.image.stem}.jpg"
        pixels = small[..., 0] if gray else cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(out_img), pixels, [cv2.IMWRITE_JPEG_QUALITY, args.quality])
        out_mask = None
        if s.mask is not None and mask is not None:
            out_mask = args.out / "masks" / f"{i:05d}_{s.image.stem}.png"
            grid = mask_to_feature_grid(mask.astype(np.float32), size)
            cv2.imwrite(str(out_mask), (grid > 0).astype(np.uint8) * 255)
        rows.append(replace(s, image=out_img, mask=out_mask))
        if (i + 1) % 200 == 0:
            print(f"{i + 1}/{len(ds.samples)}", flush=True)
    write_labels_csv(replace(ds, samples=tuple(rows)), args.out / "labels.csv")
    print(f"wrote {len(rows)} images to {args.out}")


if __name__ == "__main__":
    main()
