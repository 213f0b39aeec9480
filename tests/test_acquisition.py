"""Every acquisition strategy: seeded, no image twice, never a labelled image, within budget and cost split."""

import numpy as np
import pytest

from ml.acquisition import (
    STRATEGIES,
    AskKind,
    Candidates,
    Costs,
    cost_of,
    k_center_greedy,
    select,
    staged_ask,
)


def _clustered(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` embeddings in three tight, far-apart clusters, and each one's cluster."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(3, 16)) * 5
    cluster = rng.integers(0, 3, n)
    return centers[cluster] + rng.normal(size=(n, 16)) * 0.1, cluster


def _pool(n: int = 60, seed: int = 1, labelled: int = 8, upgradable: int = 4) -> Candidates:
    emb, _ = _clustered(n, seed)
    rng = np.random.default_rng(seed + 1)
    lab = np.zeros(n, bool)
    lab[:labelled] = True
    upg = np.zeros(n, bool)
    upg[labelled : labelled + upgradable] = True
    return Candidates(
        ids=np.arange(100, 100 + n),
        scores=rng.random(n),
        map_max=rng.random(n),
        map_entropy=rng.random(n),
        embeddings=emb.astype(np.float32),
        labelled=lab,
        upgradable=upg,
        image_threshold=0.5,
        pixel_threshold=0.6,
        labelled_embeddings=emb[:labelled].astype(np.float32),
    )


@pytest.mark.parametrize("strategy", list(STRATEGIES))
@pytest.mark.parametrize("ask", ["auto", "verdict", "mask"])
def test_strategy_contract(strategy: str, ask: str) -> None:
    c = _pool()
    costs = Costs(verdict=1, mask=10)
    asks = select(c, strategy=strategy, budget=40, costs=costs, mask_share=0.5, ask=ask, seed=3)
    assert asks == select(c, strategy=strategy, budget=40, costs=costs, mask_share=0.5, ask=ask, seed=3)
    ids = [a.image_id for a in asks]
    assert len(ids) == len(set(ids)) and asks  # no image twice, something chosen
    assert [a.rank for a in asks] == list(range(len(asks)))
    labelled = set(c.ids[c.labelled].tolist())
    upgradable = set(c.ids[c.upgradable].tolist())
    assert not labelled & set(ids)
    assert all(a.kind is AskKind.MASK for a in asks if a.image_id in upgradable)
    assert cost_of(asks, costs) <= 40
    masks = sum(a.kind is AskKind.MASK for a in asks)
    if ask == "verdict":
        assert masks == 0 and len(asks) == 40
    elif ask == "mask":
        assert masks == len(asks) == 4
    else:
        assert 0 < masks * 10 <= 20  # the mask share of the budget
        assert cost_of(asks, costs) >= 40 - 1  # the rest buys verdicts


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_empty_tiny_and_fully_labelled_pools(strategy: str) -> None:
    empty = Candidates(
        ids=np.zeros(0, int),
        scores=np.zeros(0),
        map_max=np.zeros(0),
        map_entropy=np.zeros(0),
        embeddings=np.zeros((0, 4)),
        labelled=np.zeros(0, bool),
        upgradable=np.zeros(0, bool),
    )
    assert select(empty, strategy=strategy, budget=10) == []
    one = Candidates(
        ids=np.array([7]),
        scores=np.array([0.9]),
        map_max=np.array([0.9]),
        map_entropy=np.array([0.3]),
        embeddings=np.ones((1, 4)),
        labelled=np.array([False]),
        upgradable=np.array([False]),
    )
    asks = select(one, strategy=strategy, budget=100)
    assert [(a.image_id, a.kind) for a in asks] == [(7, AskKind.MASK)]  # predicted defective: its mask
    assert select(one, strategy=strategy, budget=0) == []
    done = _pool(n=10, labelled=10, upgradable=0)
    assert select(done, strategy=strategy, budget=50) == []


def test_strategies_pick_what_they_promise() -> None:
    c = _pool(labelled=0, upgradable=0)
    near = select(c, strategy="uncertainty", budget=5, ask="verdict")
    margins = np.abs(c.scores - 0.5)
    assert sorted(a.image_id - 100 for a in near) == sorted(np.argsort(margins)[:5].tolist())
    top = select(c, strategy="top_score", budget=5, ask="verdict")
    assert [a.image_id - 100 for a in top] == np.argsort(-c.scores)[:5].tolist()
    # three tight clusters: the first three diverse picks cover all three
    _, cluster = _clustered(60, 1)
    div = select(c, strategy="diversity", budget=3, ask="verdict")
    assert {int(cluster[a.image_id - 100]) for a in div} == {0, 1, 2}
    by_score = select(c, strategy="top_score", budget=12, ask="verdict")
    hyb = select(c, strategy="hybrid", budget=3, ask="verdict")
    assert len({int(cluster[a.image_id - 100]) for a in hyb}) == 3 and by_score
    rnd = {tuple(a.image_id for a in select(c, strategy="random", budget=5, ask="verdict", seed=s)) for s in range(4)}
    assert len(rnd) > 1  # the seed matters


def test_masks_go_first_to_uncertain_confirmed_defects() -> None:
    c = _pool(labelled=0, upgradable=6)
    asks = select(c, strategy="random", budget=30, costs=Costs(1, 10), mask_share=0.7, ask="auto")
    masks = [a for a in asks if a.kind is AskKind.MASK]
    assert len(masks) == 2 and asks[0].kind is AskKind.MASK
    upg = np.flatnonzero(c.upgradable)
    best = upg[np.argsort(-c.map_entropy[upg])][:2] + 100
    assert [a.image_id for a in masks] == best.tolist()


def test_k_center_starts_from_covered_centers() -> None:
    pts = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    picks, gains = k_center_greedy(pts, 2, np.random.default_rng(0), centers=np.array([[0.0, 0.05]]))
    assert picks[0] in (2, 3) and gains[0] > 5  # the uncovered cluster first
    assert len(set(picks.tolist())) == 2


def _k_center_before(
    points: np.ndarray, k: int, rng: np.random.Generator, centers: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """k_center_greedy as it was: an (N, C) temporary per pick, an (N, 256, C) one for the centers."""
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


@pytest.mark.parametrize(("n", "channels", "m", "seed"), [(5000, 152, 0, 0), (5000, 152, 40, 1), (3000, 24, 7, 2)])
def test_k_center_picks_what_it_picked_before_bit_for_bit(n: int, channels: int, m: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(n, channels))
    points[n // 2 :: 97] = points[1]  # exact duplicates: ties decide by index, as before
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    centers = rng.normal(size=(m, channels)) if m else None
    new = k_center_greedy(points, 40, np.random.default_rng(seed), centers)
    old = _k_center_before(points, 40, np.random.default_rng(seed), centers)
    assert new[0].tolist() == old[0].tolist()
    assert np.array_equal(new[1], old[1])  # the same distances, not merely close ones


def test_bad_arguments_are_named() -> None:
    c = _pool()
    with pytest.raises(ValueError, match="unknown acquisition strategy 'best'"):
        select(c, strategy="best", budget=5)
    with pytest.raises(ValueError, match="mask_share"):
        select(c, strategy="random", budget=5, mask_share=2)
    with pytest.raises(ValueError, match="ask must be"):
        select(c, strategy="random", budget=5, ask="polygon")
    with pytest.raises(ValueError, match="Candidates.scores"):
        Candidates(
            ids=np.arange(3),
            scores=np.zeros(2),
            map_max=np.zeros(3),
            map_entropy=np.zeros(3),
            embeddings=np.zeros((3, 2)),
            labelled=np.zeros(3, bool),
            upgradable=np.zeros(3, bool),
        )


def test_staged_asks_verdicts_while_detection_rises_then_masks_for_good() -> None:
    assert staged_ask([0.65], masks_started=False) == "verdict"  # only the bootstrap is measured
    assert staged_ask([0.65, 0.82, 0.87], masks_started=False) == "verdict"
    assert staged_ask([0.65, 0.82, 0.875, 0.88], masks_started=False) == "auto"  # +0.5 points: levelled off
    assert staged_ask([0.65, 0.82, 0.80], masks_started=False) == "auto"  # a drop also ends the verdict stage
    assert staged_ask([0.65, 0.82, 0.90], masks_started=True) == "auto"  # the switch is final
    assert staged_ask([0.65, 0.82, 0.84], masks_started=False, min_gain=0.03) == "auto"
    assert staged_ask([None, None], masks_started=False) == "auto"  # no evaluation split: the default
