"""Acquisition strategies: which pool images humans should label next, and which label to ask for.

Pure functions, seeded: arrays in, a ranked list of :class:`Ask` out. A strategy only orders
the eligible images; one allocator (:func:`select`) then spends the round's budget in cost
units, deciding per image whether to ask for a verdict (OK / Defect) or for a mask:

- an image whose current label is a verdict "defective" without a mask may be asked for its
  mask (an upgrade); an image with a complete label (normal, or defective with a mask) is
  never asked again;
- masks go first to confirmed defects where the anomaly map is least certain (highest map
  entropy), then to unlabelled images the model predicts defective, in strategy order, while
  the mask share of the budget lasts; the rest of the budget buys verdicts in strategy order;
- a mask ask reserves the mask cost even though an image that turns out normal costs only a
  verdict, so a round never overspends.

Across rounds, the "staged" policy (:func:`staged_ask`) asks for verdicts only while image
detection still improves, then for verdicts and masks ("auto") for the rest of the run:
verdicts buy detection cheaply, masks then buy localisation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np


class AskKind(StrEnum):
    VERDICT = "verdict"  # OK / Defect only
    MASK = "mask"  # draw the defect


@dataclass(frozen=True)
class Ask:
    """One image to put in front of annotators: ``rank`` 0 is shown first."""

    image_id: int
    kind: AskKind
    rank: int
    priority: float  # the strategy's value for this image (higher = more wanted)


@dataclass(frozen=True)
class Candidates:
    """The pool as the active model sees it; every array has one entry per image (N).

    ids: ``(N,)`` int image ids. scores: ``(N,)`` image scores in [0, 1]. map_max: ``(N,)``
    maximum of each anomaly map. map_entropy: ``(N,)`` mean binary entropy of the map over its
    suspicious region (0 where nothing is suspicious). embeddings: ``(N, C)`` pooled features.
    labelled: ``(N,)`` bool, the image has a complete label (never asked again).
    upgradable: ``(N,)`` bool, the image has a "defective" verdict without a mask.
    labelled_embeddings: ``(M, C)`` embeddings of already-labelled images (diversity starts
    from them), may be empty.
    """

    ids: np.ndarray
    scores: np.ndarray
    map_max: np.ndarray
    map_entropy: np.ndarray
    embeddings: np.ndarray
    labelled: np.ndarray
    upgradable: np.ndarray
    image_threshold: float = 0.5
    pixel_threshold: float = 0.5
    labelled_embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    def __post_init__(self) -> None:
        n = len(self.ids)
        for name in ("scores", "map_max", "map_entropy", "labelled", "upgradable"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Candidates.{name}: {len(getattr(self, name))} entries for {n} ids")
        if self.embeddings.shape[0] != n:
            raise ValueError(f"Candidates.embeddings: {self.embeddings.shape[0]} rows for {n} ids")
        if len(np.unique(self.ids)) != n:
            raise ValueError("Candidates.ids: duplicate image ids")

    @property
    def predicted_defective(self) -> np.ndarray:
        return (self.scores >= self.image_threshold) | (self.map_max >= self.pixel_threshold)

    @property
    def open(self) -> np.ndarray:
        """Images without any label (a verdict or a mask may be asked)."""
        return ~self.labelled & ~self.upgradable


@dataclass(frozen=True)
class Costs:
    """Annotation cost units of one answer of each kind (project settings)."""

    verdict: float = 1.0
    mask: float = 10.0

    def of(self, kind: AskKind) -> float:
        return self.mask if kind is AskKind.MASK else self.verdict


# A strategy orders the open images: (candidates, how many at most, rng) -> (indices, priorities)
Strategy = Callable[[Candidates, int, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def _open_idx(c: Candidates, rng: np.random.Generator) -> np.ndarray:
    """Open image indices in a seeded random order (the tie-break of every strategy)."""
    return rng.permutation(np.flatnonzero(c.open))


def _by_key(c: Candidates, k: int, rng: np.random.Generator, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = _open_idx(c, rng)
    order = idx[np.argsort(-key[idx], kind="stable")][:k]
    return order, key[order]


def random_strategy(c: Candidates, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The baseline: a seeded random sample."""
    idx = _open_idx(c, rng)[:k]
    return idx, np.zeros(len(idx))


def uncertainty_strategy(c: Candidates, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Scores closest to the decision threshold first."""
    return _by_key(c, k, rng, -np.abs(c.scores - c.image_threshold))


def disagreement_strategy(c: Candidates, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The classification head and the anomaly map disagree (one says defect, the other not),
    most of all where the score and the map maximum lie far apart."""
    votes = (c.scores >= c.image_threshold).astype(float) - (c.map_max >= c.pixel_threshold).astype(float)
    return _by_key(c, k, rng, np.abs(votes) + np.abs(c.scores - c.map_max))


def top_score_strategy(c: Candidates, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Likely defects first (useful early, when defects are rare)."""
    return _by_key(c, k, rng, c.scores.astype(float))


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


#: Rows of ``points`` per block in :func:`k_center_greedy`: a ``(rows, C)`` float64 scratch
#: block stays in the CPU cache while a pick's distances are computed.
KCENTER_BLOCK_ROWS = 2048


def _distances(points: np.ndarray, q: np.ndarray, out: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """``out[n] = ||points[n] - q||`` ``(N,)``, bit for bit what ``np.linalg.norm(points - q, axis=1)``
    gives (the same subtraction, squares and per-row sum), a block of rows at a time through
    ``scratch`` ``(rows, C)`` instead of an ``(N, C)`` temporary per step."""
    rows = len(scratch)
    for start in range(0, len(points), rows):
        stop = min(start + rows, len(points))
        block = scratch[: stop - start]
        np.subtract(points[start:stop], q, out=block)
        np.multiply(block, block, out=block)
        np.add.reduce(block, axis=1, out=out[start:stop])
    return np.sqrt(out, out=out)


def k_center_greedy(
    points: np.ndarray, k: int, rng: np.random.Generator, centers: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-center on ``points`` ``(N, C)``: each pick is the point farthest from every
    center so far (``centers`` ``(M, C)`` are covered already). Returns the indices in pick
    order and each pick's distance to its nearest earlier center (the coverage it adds).

    Memory: ``points`` and a few ``(N,)`` arrays, whatever ``M`` and ``k``; time ``O((M + k) N C)``."""
    points = np.ascontiguousarray(points, np.float64)
    n = len(points)
    k = min(k, n)
    if k <= 0:
        return np.zeros(0, np.int64), np.zeros(0)
    dist = np.full(n, np.inf)
    new = np.empty(n)
    scratch = np.empty((min(KCENTER_BLOCK_ROWS, n), points.shape[1]))
    if centers is not None and len(centers):
        for center in np.asarray(centers, np.float64):
            np.minimum(dist, _distances(points, center, new, scratch), out=dist)
    picks, gains = [], []
    for _ in range(k):
        i = int(rng.integers(n)) if np.isinf(dist).all() else int(np.argmax(dist))
        gains.append(0.0 if np.isinf(dist[i]) else float(dist[i]))
        picks.append(i)
        np.minimum(dist, _distances(points, points[i].copy(), new, scratch), out=dist)
        dist[i] = -1.0  # never picked twice
    return np.asarray(picks, np.int64), np.asarray(gains)


def diversity_strategy(c: Candidates, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """k-center greedy on the L2-normalised embeddings, starting from the labelled images,
    so a batch covers the pool instead of holding twenty copies of one defect."""
    idx = _open_idx(c, rng)
    if len(idx) == 0:
        return idx, np.zeros(0)
    centers = _normalise(c.labelled_embeddings) if c.labelled_embeddings.size else None
    picks, gains = k_center_greedy(_normalise(c.embeddings[idx]), k, rng, centers)
    return idx[picks], gains


HYBRID_SHORTLIST = 4


def hybrid_strategy(c: Candidates, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Uncertainty, then diversity: k-center greedy among the ``4 k`` most uncertain images."""
    short, _ = uncertainty_strategy(c, HYBRID_SHORTLIST * k, rng)
    if len(short) == 0:
        return short, np.zeros(0)
    centers = _normalise(c.labelled_embeddings) if c.labelled_embeddings.size else None
    picks, gains = k_center_greedy(_normalise(c.embeddings[short]), k, rng, centers)
    return short[picks], gains


STRATEGIES: dict[str, Strategy] = {
    "random": random_strategy,
    "uncertainty": uncertainty_strategy,
    "disagreement": disagreement_strategy,
    "diversity": diversity_strategy,
    "hybrid": hybrid_strategy,
    "top_score": top_score_strategy,
}


class AskPolicy(StrEnum):
    """What a round asks annotators for.

    AUTO: verdicts, and masks where they teach most (at most ``mask_share`` of the budget);
    VERDICT: verdicts only; MASK: a full annotation of every image, the conventional way;
    STAGED: a run-level policy, resolved to VERDICT or AUTO per round by :func:`staged_ask`.
    """

    AUTO = "auto"
    VERDICT = "verdict"
    MASK = "mask"
    STAGED = "staged"


ASK_POLICIES = (AskPolicy.AUTO, AskPolicy.VERDICT, AskPolicy.MASK)  # what one round asks for (see select)
STAGED = AskPolicy.STAGED
RUN_ASK_POLICIES = tuple(AskPolicy)


def staged_ask(image_ap: Sequence[float | None], *, masks_started: bool, min_gain: float = 0.01) -> AskPolicy:
    """The ask policy of a staged run's next round: VERDICT or AUTO.

    ``image_ap``: the evaluation image AP (in [0, 1]) after each finished round of the run, round
    0 (the unsupervised bootstrap) first; None where a round has no measurement.
    ``masks_started``: an earlier round of the run already asked for masks; the switch is
    final, so one noisy round cannot send the run back to verdicts.

    Verdicts while the last labelled round raised image AP by at least ``min_gain``; "auto"
    once it gained less (detection has levelled off, or the curve turned noisy). Until two
    measurements exist (round 0 and one labelled round) the answer is "verdict"; without
    measurements (no evaluation split) a plateau cannot be seen, so the answer is "auto",
    the product default.
    """
    measured = [v for v in image_ap if v is not None]
    if masks_started or len(measured) < len(image_ap):
        return AskPolicy.AUTO
    if len(measured) < 2:
        return AskPolicy.VERDICT
    return AskPolicy.VERDICT if float(measured[-1]) - float(measured[-2]) >= min_gain else AskPolicy.AUTO


def get_strategy(name: str) -> Strategy:
    """A strategy by name; the error lists the known ones."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown acquisition strategy {name!r}; choose one of: {', '.join(STRATEGIES)}") from None


def select(
    c: Candidates,
    *,
    strategy: str,
    budget: float,
    costs: Costs = Costs(),
    mask_share: float = 0.5,
    ask: AskPolicy | str = AskPolicy.AUTO,
    seed: int = 0,
) -> list[Ask]:
    """Spend ``budget`` cost units on the pool: a ranked list of asks, no image twice.

    ``ask``: "auto" (verdicts and masks as described in the module docstring, at most
    ``mask_share`` of the budget on masks), "verdict" (verdicts only) or "mask" (a full
    annotation for every image, the conventional way: mask cost reserved for each).
    The sum of the reserved costs never exceeds ``budget``.
    """
    strat = get_strategy(strategy)
    if ask not in ASK_POLICIES:
        raise ValueError(f"ask must be one of {', '.join(ASK_POLICIES)}, got {ask!r}")
    ask = AskPolicy(ask)
    if not 0.0 <= mask_share <= 1.0:
        raise ValueError(f"mask_share must lie in [0, 1], got {mask_share}")
    if budget < 0 or costs.verdict <= 0 or costs.mask <= 0:
        raise ValueError("budget must be >= 0 and costs > 0")
    rng = np.random.default_rng(seed)
    cheapest = costs.mask if ask is AskPolicy.MASK else costs.verdict
    order, prio = strat(c, int(budget // cheapest), rng)
    rank_of = {int(i): r for r, i in enumerate(order)}
    prio_of = {int(i): float(p) for i, p in zip(order, prio, strict=True)}
    chosen: dict[int, AskKind] = {}
    spent = 0.0

    def take(i: int, kind: AskKind, limit: float) -> bool:
        nonlocal spent
        if i in chosen or spent + costs.of(kind) > limit + 1e-9:
            return False
        chosen[i] = kind
        spent += costs.of(kind)
        return True

    if ask is AskPolicy.MASK:
        for i in order:
            take(int(i), AskKind.MASK, budget)
    else:
        if ask is AskPolicy.AUTO:
            mask_limit = min(budget, mask_share * budget)
            upgrades = np.flatnonzero(c.upgradable)
            upgrades = upgrades[np.argsort(-c.map_entropy[upgrades], kind="stable")]
            likely = [int(i) for i in order if c.predicted_defective[i]]
            for i in [*map(int, upgrades), *likely]:
                take(i, AskKind.MASK, mask_limit)
        for i in order:
            take(int(i), AskKind.VERDICT, budget)
    # rank: upgrades first (their verdict is known, the mask is what is missing), then strategy order
    keyed = sorted(chosen, key=lambda i: (i in rank_of, rank_of.get(i, -c.map_entropy[i])))
    return [Ask(int(c.ids[i]), chosen[i], r, prio_of.get(i, float(c.map_entropy[i]))) for r, i in enumerate(keyed)]


def cost_of(asks: list[Ask], costs: Costs = Costs()) -> float:
    """The cost units reserved by ``asks``."""
    return float(sum(costs.of(a.kind) for a in asks))
