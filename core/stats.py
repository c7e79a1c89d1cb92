"""Noise-aware statistics shared by every level: the noise floor, the keep rule, the meta-level gate and reporting.

Why these and nothing fancier (DESIGN.md section 6):

* An L1 edit is kept only when it beats the best by more than max(2 sigma, floor), sigma being the spread of
  repeated baseline trials with different seeds: smaller "gains" are indistinguishable from seed noise.
* A meta-level candidate races its incumbent on paired windows (same start, same trial seeds): pairs are
  added until a one-sided sign-flip permutation test promotes it or it is dropped (``race_step``; see
  docs/protocol.md). The false promotion rate is bounded by alpha and measured in tests and bench/.
* Reports (``recur ablate``) give mean +- a Student t CI per group and permutation-test p-values, which are
  exact for the small numbers of seeds recur can afford and assume no normality.

Conventions: paired differences are oriented so that positive means "candidate better". Reporting functions
(``mean_ci``, ``paired_pvalue``, ``two_sample_pvalue``, ``noise_sigma``) drop ``None`` and non-finite values,
which stand for failed runs without a metric. Gate functions (``bootstrap_ci``, ``race_step``) do not
drop anything: a non-finite difference makes the CI (nan, nan), and a gate never promotes on it.
"""
from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

if TYPE_CHECKING:
    import numpy as np

# numpy and scipy.stats are imported inside the functions that need them: importing scipy.stats costs about a
# second, and this module is imported by every level on every CLI start for the three cheap functions below.

#: Monte Carlo draws for permutation tests, and the bound for exact enumeration: 2**13 = 8192 <= 9999, so up
#: to 13 pairs the sign-flip test is exact, and two groups are exact while C(na+nb, na) <= 9999 (e.g. 7 vs 7).
PERMUTATIONS = 9999


def _finite(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


# ------------------------------------------------------------------ keep rule (level 1)
def noise_sigma(values: Iterable[float | None]) -> float:
    """Sample standard deviation of the finite values (0 with fewer than two).

    Failed baseline trials (None, NaN, inf) carry no information about seed noise, so they are ignored.
    ``statistics.stdev`` is exact (rational arithmetic), so identical values give exactly 0; a spread too
    large for a float gives inf (nothing is then kept), never an exception.
    """
    finite = _finite(values)
    if len(finite) < 2:
        return 0.0
    try:
        return statistics.stdev(finite)
    except OverflowError:
        return math.inf


def keep_threshold(sigma: float, floor: float) -> float:
    """The minimum gain to keep an edit: 2 sigma (about a 95 % band of seed noise), never below ``floor``."""
    return max(2.0 * sigma, floor)


def improves(metric: float | None, best: float | None, threshold: float, maximize: bool = False) -> bool:
    """True when ``metric`` beats ``best`` by more than ``threshold`` in the task's direction.

    A missing or non-finite metric never improves (a failed run must not become the best); a missing or NaN
    best means there is nothing to beat yet, so any finite metric improves.
    """
    if metric is None or not math.isfinite(metric):
        return False
    if best is None or math.isnan(best):
        return True
    return (metric - best > threshold) if maximize else (best - metric > threshold)


# ------------------------------------------------------------------ meta-level gate: racing
def bootstrap_ci(diffs: Sequence[float], seed: int, level: float = 0.95, n: int = 2000) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean paired difference (scipy.stats.bootstrap), deterministic for ``seed``.

    Percentile rather than BCa: BCa is undefined (NaN) on degenerate data, which is common here (identical
    arms give all-equal differences). A single value or all-identical values give (x, x); no values (0, 0);
    a non-finite value (nan, nan).
    """
    if len(diffs) == 0:
        return (0.0, 0.0)
    import numpy as np
    from scipy import stats as st

    arr = np.asarray(diffs, dtype=float)
    if not np.all(np.isfinite(arr)):
        return (math.nan, math.nan)
    if len(arr) < 2 or np.all(arr == arr[0]):
        return (float(arr[0]), float(arr[0]))
    res = st.bootstrap((arr,), np.mean, n_resamples=n, confidence_level=level, method="percentile",
                       random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def sign_flip_pvalue(diffs: Sequence[float], seed: int = 0, alternative: str = "greater") -> float:
    """p-value of the sign-flip permutation test of the mean paired difference (scipy.stats.permutation_test).

    Under the null the candidate and its control are exchangeable on their shared seeds, so each difference is
    as likely to be +d as -d. Exact (every sign pattern) up to 13 pairs, seeded Monte Carlo beyond. Fewer than
    two differences, or all zero, give 1.0.
    """
    import numpy as np

    xs = np.asarray(_finite(diffs), dtype=float)
    if xs.size < 2 or np.all(xs == 0):
        return 1.0
    if 2 ** xs.size <= PERMUTATIONS:
        return _exact_sign_flip(xs, alternative)
    from scipy import stats as st

    res = st.permutation_test((xs,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples",
                              vectorized=True, n_resamples=PERMUTATIONS, alternative=alternative,
                              random_state=np.random.default_rng(seed))
    return float(min(1.0, res.pvalue))


def _exact_sign_flip(xs: np.ndarray, alternative: str) -> float:
    """The exact branch of ``scipy.stats.permutation_test`` for a sign flip, without its per-call overhead
    (about 0.1 s, a few dozen calls per run): every sign pattern's mean summed in scipy's order, the same tie tolerance (100 machine epsilons of the observed mean) and the same counts, so the p-value is
    scipy's to the bit (tests/test_stats.py checks it on thousands of inputs)."""
    import numpy as np

    n = xs.size
    bits = (np.arange(2 ** n)[:, None] >> np.arange(n)) & 1
    signed = np.where(bits == 1, -xs, xs)
    total = signed[:, 0].copy()
    for k in range(1, n):  # left to right, as np.mean sums scipy's (strided) batch; pairwise sums differ in ties
        total += signed[:, k]
    null = total / n
    observed = np.mean(xs)
    gamma = abs(np.finfo(float).eps * 100 * observed)
    less = np.count_nonzero(null <= observed + gamma) / 2 ** n
    greater = np.count_nonzero(null >= observed - gamma) / 2 ** n
    p = {"less": less, "greater": greater}.get(alternative, 2 * min(less, greater))
    return float(min(1.0, p))


def race_looks(max_pairs: int) -> list[int]:
    """When the race tests: after 2, 4, 8, ... pairs (doubling, SMAC-style intensification) and at ``max_pairs``."""
    looks, n = [], 2
    while n < max_pairs:
        looks.append(n)
        n *= 2
    return looks + [max(1, max_pairs)]


def smallest_p(n: int) -> float:
    """The smallest one-sided sign-flip p that ``n`` pairs can give (every pair ahead): 2**-n when enumerated
    exactly, 1/(1 + PERMUTATIONS) by Monte Carlo; 1.0 below two pairs (``sign_flip_pvalue``)."""
    if n < 2:
        return 1.0
    return 2.0 ** -n if 2 ** n <= PERMUTATIONS else 1.0 / (1 + PERMUTATIONS)


def race_alpha(alpha: float, max_pairs: int) -> float:
    """Per-look level: ``alpha`` split (Bonferroni) over the looks at which the test can reject at all.

    With n pairs the smallest one-sided p is ``smallest_p(n)``, so early looks that can never reject cost no
    alpha: the level is alpha / k for the smallest k such that at most k looks can reject at alpha / k, which
    keeps the race's false promotion rate at most ``alpha`` however many looks it takes. (Until 2026-12-03 this
    iterated k = looks that can reject at alpha / k to a fixed point, which never ends when it oscillates, e.g.
    alpha 0.01 with 20 pairs; where it ended, it ended at this k.)
    """
    looks = race_looks(max_pairs)
    for k in range(1, len(looks) + 1):
        if sum(1 for n in looks if smallest_p(n) <= alpha / k) <= k:
            return alpha / k
    return alpha / len(looks)


FUTILITY = 0.1
"""A race drops its candidate early when it is behind with a one-sided p (of being worse) at most this. Racing
costs nothing but what the candidate's own trials lose (blocks on the line), and the screen has already
filtered likely harm, so a candidate that is merely not yet ahead keeps its blocks; one the race shows to be
worse stops spending them. (At 0.25, 14 of 40 races of the best family on the synthetic task, gp_ei, whose
per-block effect is a tenth of the block's spread, were dropped at 4 or 8 blocks by chance.)"""


@dataclass
class RaceStep:
    decision: str  # "promote" (significant gain), "drop" (likely worse, or out of pairs) or "continue"
    p: float | None  # None between looks: the gate did not test at this many pairs
    mean: float
    pairs: int


def first_promoting_look(alpha: float, max_pairs: int) -> int:
    """The fewest pairs at which ``race_step`` can promote at all: the first look whose ``smallest_p`` is within
    the per-look level (8 with the defaults, alpha 0.05 and 16 pairs); ``max_pairs + 1`` when no look can."""
    level = race_alpha(alpha, max_pairs)
    return next((n for n in race_looks(max_pairs) if smallest_p(n) <= level), max_pairs + 1)


def race_step(diffs: Sequence[float], alpha: float, max_pairs: int, seed: int = 0) -> RaceStep:
    """The one meta-level gate, used by every outer level and by ``recur mech eval``: after each pair of
    candidate/incumbent windows, decide whether to promote, drop or add pairs.

    At each look (``race_looks``) a one-sided sign-flip test of the paired differences (positive = candidate
    better) promotes when p <= ``race_alpha``; from four pairs on a candidate that is behind with a one-sided
    p of being worse at most ``FUTILITY`` is dropped (futility: stopping early never raises the false
    promotion rate); at ``max_pairs`` it is dropped. A non-finite
    difference drops at once. Between looks nothing is tested and ``p`` is None (a race that a run's end cut
    at 5 pairs once reported p = 1 beside an all-positive CI).
    """
    n = len(diffs)
    if n and not all(d is not None and math.isfinite(d) for d in diffs):
        return RaceStep("drop", 1.0, math.nan, n)
    mean = statistics.fmean(diffs) if n else 0.0
    if n not in race_looks(max_pairs):
        return RaceStep("continue" if n < max_pairs else "drop", None, mean, n)
    p = sign_flip_pvalue(diffs, seed=seed)
    if mean > 0 and p <= race_alpha(alpha, max_pairs):
        return RaceStep("promote", p, mean, n)
    if n >= max_pairs or (n >= 4 and mean <= 0 and sign_flip_pvalue(diffs, seed=seed, alternative="less") <= FUTILITY):
        return RaceStep("drop", p, mean, n)
    return RaceStep("continue", p, mean, n)


# ------------------------------------------------------------------ reporting
def mean_ci(values: Iterable[float | None], level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Student t CI of the mean of a group (e.g. one ablation group's final metrics over seeds).

    The t interval is exact for normal data and robust enough for the 3-20 repeats recur runs; unlike the
    bootstrap it does not understate the width for tiny n. ``seed`` is accepted for a uniform signature and
    unused (the interval is analytic). One value gives (x, x); none gives (nan, nan); constant values (x, x).
    """
    xs = _finite(values)
    if not xs:
        return (math.nan, math.nan)
    if len(xs) == 1 or all(x == xs[0] for x in xs):
        return (xs[0], xs[0])
    from scipy import stats as _st

    m = statistics.fmean(xs)
    try:
        sd = statistics.stdev(xs)
    except OverflowError:
        return (-math.inf, math.inf)
    half = float(_st.t.ppf(0.5 + level / 2, len(xs) - 1)) * sd / math.sqrt(len(xs))
    return (m - half, m + half)


def _tail(null: np.ndarray, observed: float, scale: float) -> int:
    """How many null statistics are at least as extreme as ``observed`` (two-sided, in absolute value).

    Ties need a tolerance: the same arrangement summed in another order differs in the last bits, and counting
    it as less extreme would make exact p-values too small.
    """
    import numpy as np

    return int(np.count_nonzero(np.abs(null) >= abs(observed) - 1e-10 * scale))


def _chunks(total: int, width: int, cells: int = 1 << 20) -> Iterable[int]:
    rows = max(1, cells // max(1, width))
    for start in range(0, total, rows):
        yield min(rows, total - start)


def paired_pvalue(diffs: Iterable[float | None], seed: int = 0) -> float:
    """Two-sided p-value that the mean paired difference is 0: a sign-flip permutation test.

    Under the null each pair's difference is as likely to be +d as -d (candidate and control are exchangeable
    on a shared seed), so flipping signs gives the null distribution without assuming normality. Exact (all
    2**n sign patterns) up to 13 pairs, which covers what recur can afford; beyond, a Monte Carlo of
    ``PERMUTATIONS`` patterns seeded by ``seed``, with the (1 + hits) / (1 + draws) estimate that keeps it valid.
    No pairs or all-zero differences give 1.0. numpy rather than scipy.stats.permutation_test, which refuses
    a single pair.
    """
    import numpy as np

    xs = np.asarray(_finite(diffs), dtype=float)
    n = xs.size
    if n == 0 or np.all(xs == 0):
        return 1.0
    scale = float(np.abs(xs).max())
    observed = float(xs.mean())
    if 2 ** n <= PERMUTATIONS:
        bits = (np.arange(2 ** n)[:, None] >> np.arange(n)) & 1
        null = (1 - 2 * bits) @ xs / n
        return min(1.0, _tail(null, observed, scale) / 2 ** n)
    rng = np.random.default_rng(seed)
    hits = 0
    for rows in _chunks(PERMUTATIONS, n):
        signs = rng.choice(np.array([-1.0, 1.0]), size=(rows, n))
        hits += _tail(signs @ xs / n, observed, scale)
    return min(1.0, (1 + hits) / (1 + PERMUTATIONS))


def two_sample_pvalue(a: Iterable[float | None], b: Iterable[float | None], seed: int = 0) -> float:
    """Two-sided p-value that two independent groups have the same mean: a permutation test of |mean(a) - mean(b)|.

    Chosen over Welch's t because ablation groups are small (2-10 runs) and often degenerate: Welch returns
    NaN for constant groups and relies on normality that a handful of runs cannot show, while relabelling runs
    between groups is exact under exchangeability. All C(na+nb, na) relabellings are enumerated while there
    are at most ``PERMUTATIONS`` (e.g. 7 vs 7), else a Monte Carlo seeded by ``seed``. An empty group or
    identical constant groups give 1.0; 1 vs 1 gives 1.0 (the only other labelling is as extreme).
    """
    import numpy as np

    xa, xb = np.asarray(_finite(a), dtype=float), np.asarray(_finite(b), dtype=float)
    na, nb = xa.size, xb.size
    if na == 0 or nb == 0:
        return 1.0
    pooled = np.concatenate([xa, xb])
    if np.all(pooled == pooled[0]):
        return 1.0
    total, n = float(pooled.sum()), na + nb
    scale = float(np.abs(pooled).max())
    observed = float(xa.mean() - xb.mean())

    def stat(sum_a: np.ndarray) -> np.ndarray:
        return sum_a / na - (total - sum_a) / nb

    k = min(na, nb)  # enumerate the smaller side; the statistic is then taken for that side, |.| is unchanged
    if math.comb(n, k) <= PERMUTATIONS:
        idx = np.fromiter(itertools.chain.from_iterable(itertools.combinations(range(n), k)), dtype=np.intp)
        sums = pooled[idx.reshape(-1, k)].sum(axis=1)
        if k != na:
            sums = total - sums
        return min(1.0, _tail(stat(sums), observed, scale) / math.comb(n, k))
    rng = np.random.default_rng(seed)
    hits = 0
    for rows in _chunks(PERMUTATIONS, n):
        perm = rng.permuted(np.broadcast_to(pooled, (rows, n)), axis=1)
        hits += _tail(stat(perm[:, :na].sum(axis=1)), observed, scale)
    return min(1.0, (1 + hits) / (1 + PERMUTATIONS))
