"""k-center greedy selection (the diversity and hybrid strategies' core) at a line's pool size.

Times ``ml.acquisition.k_center_greedy`` against the implementation it replaced (an ``(N, C)``
temporary per pick, an ``(N, M, C)`` one for the labelled centers), on the same synthetic
L2-normalised embeddings in the same run, checks that both pick the same images with the same
distances, and prints one JSON object. Numpy only: no images, no database.

    OMP_NUM_THREADS=1 python bench/kcenter.py --images 100000 --channels 152 --budget 50 --labelled 20
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np

from ml.acquisition import k_center_greedy


def k_center_before(
    points: np.ndarray, k: int, rng: np.random.Generator, centers: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``k_center_greedy`` before it computed distances in place, block by block."""
    n = len(points)
    k = min(k, n)
    if k <= 0:
        return np.zeros(0, np.int64), np.zeros(0)
    dist = np.full(n, np.inf)
    if centers is not None and len(centers):
        for start in range(0, len(centers), 256):
            d = np.linalg.norm(points[:, None, :] - centers[None, start : start + 256, :], axis=2)
            dist = np.minimum(dist, d.min(axis=1))
    picks, gains = [], []
    for _ in range(k):
        i = int(rng.integers(n)) if np.isinf(dist).all() else int(np.argmax(dist))
        gains.append(0.0 if np.isinf(dist[i]) else float(dist[i]))
        picks.append(i)
        dist = np.minimum(dist, np.linalg.norm(points - points[i], axis=1))
        dist[i] = -1.0
    return np.asarray(picks, np.int64), np.asarray(gains)


def _unit(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    x = rng.normal(size=(n, c))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=100_000, help="pool embeddings N")
    ap.add_argument(
        "--channels", type=int, default=152, help="embedding size C (152: tf_efficientnet_lite0, the default)"
    )
    ap.add_argument("--budget", type=int, default=50, help="picks k (a round's batch)")
    ap.add_argument("--labelled", type=int, default=20, help="labelled embeddings M the picks start from")
    ap.add_argument("--repeats", type=int, default=3, help="best of this many runs each")
    ap.add_argument("--skip-before", action="store_true", help="time only the current implementation")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    points = _unit(rng, args.images, args.channels)
    centers = _unit(rng, args.labelled, args.channels) if args.labelled else None

    def timed(fn) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
        best, out = float("inf"), None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = fn(points, args.budget, np.random.default_rng(1), centers)
            best = min(best, time.perf_counter() - t0)
        assert out is not None
        return best, out

    after_s, after = timed(k_center_greedy)
    result: dict[str, object] = {
        "images": args.images,
        "channels": args.channels,
        "budget": args.budget,
        "labelled": args.labelled,
        "after_s": round(after_s, 3),
    }
    if not args.skip_before:
        before_s, before = timed(k_center_before)
        result.update(
            {
                "before_s": round(before_s, 3),
                "speedup": round(before_s / after_s, 2),
                "same_picks": before[0].tolist() == after[0].tolist(),
                "same_distances": bool(np.array_equal(before[1], after[1])),
            }
        )
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
