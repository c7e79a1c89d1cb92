"""Noise-aware statistics shared by every level: the noise floor, the keep rule, the meta-level gate and reporting.

Why these and nothing fancier (DESIGN.md section 6):

* An L1 edit is kept only when it beats the best by more than max(2 sigma, floor), sigma being the spread of
  repeated baseline trials with different seeds: smaller "gains" are indistinguishable from seed noise.
* A meta-level candidate is compared with a control on paired seeds; with two or more pairs it is promoted
  when the lower end of a percentile bootstrap CI of the mean paired difference is above 0, with one pair
  when the difference beats the noise threshold.
* Reports (``recur ablate``) give mean +- a Student t CI per group and permutation-test p-values, which are
  exact for the small numbers of seeds recur can afford and assume no normality.

Conventions: paired differences are oriented so that positive means "candidate better". Reporting functions
(``mean_ci``, ``paired_pvalue``, ``two_sample_pvalue``, ``noise_sigma``) drop ``None`` and non-finite values,
which stand for failed runs without a metric. Gate functions (``bootstrap_ci``, ``gate_promotes``) do not
drop anything: a non-finite difference makes the CI (nan, nan), and a gate never promotes on it.
"""
from __future__ import annotations

import itertools
import math
import statistics
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


# ------------------------------------------------------------------ meta-level gate
def bootstrap_ci(diffs: Sequence[float], seed: int, level: float = 0.95, n: int = 2000) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean paired difference, deterministic for ``seed``.

    Percentile rather than BCa: BCa is undefined (NaN) on degenerate data, which is common here (identical
    windows give all-equal differences), and with a handful of pairs its correction is itself noisy. The
    resampling is the exact numpy recipe levels/outer.py used, so recorded gate decisions reproduce.
    A single value or all-identical values give (x, x); no values give (0, 0), which never promotes.
    """
    if len(diffs) == 0:
        return (0.0, 0.0)
    import numpy as np

    arr = np.asarray(diffs, dtype=float)
    if not np.all(np.isfinite(arr)):
        return (math.nan, math.nan)
    if len(arr) < 2 or np.all(arr == arr[0]):
        return (float(arr[0]), float(arr[0]))
    rng = np.random.default_rng(seed)
    means = rng.choice(arr, size=(n, len(arr)), replace=True).mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def gate_promotes(diffs: Sequence[float], seed: int, threshold: float,
                  gain_diffs: Sequence[float] | None = None) -> bool:
    """The outer-level promotion rule of levels/outer.py ``accept`` as a pure function (before accept hooks).

    Two or more pairs: promote when the bootstrap CI lower bound of the mean difference is above 0 (the
    CI already accounts for noise, so no threshold). One pair: no spread to estimate, so the difference must
    beat the level-1 noise ``threshold``. outer.py compares the *unnormalised* gain difference of that pair
    (candidate gain minus control gain) with the threshold; pass it as ``gain_diffs`` to reproduce that exactly,
    otherwise ``diffs`` is used. No pairs, or a non-finite difference, never promote.
    """
    if len(diffs) == 0:
        return False
    if len(diffs) >= 2:
        lo, _ = bootstrap_ci(diffs, seed)
        return bool(lo > 0)
    gains = list(gain_diffs) if gain_diffs is not None else list(diffs)
    if not gains or not all(math.isfinite(g) for g in gains):
        return False
    return statistics.fmean(gains) > threshold


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
