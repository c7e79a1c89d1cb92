"""mechanism_api's Gaussian process: the pure-Python helpers a model-based mechanism uses in the sandbox."""
import math
import random

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from recur.core.mechanism_api import expected_improvement, gp_fit, gp_predict


def _numpy_gp(points, values, categorical, ls, noise, query):
    """The textbook posterior with numpy's linear algebra, to check the hand-written Cholesky against."""
    def k(a, b):
        d = [(0.0 if x == y else 1.0) if c else (x - y) / ls for x, y, c in zip(a, b, categorical)]
        return math.exp(-0.5 * sum(v * v for v in d))
    y = np.array(values)
    mean, spread = y.mean(), y.std() or 1.0
    K = np.array([[k(a, b) for b in points] for a in points]) + noise * np.eye(len(points))
    ks = np.array([k(query, p) for p in points])
    mu = ks @ np.linalg.solve(K, (y - mean) / spread)
    var = 1.0 - ks @ np.linalg.solve(K, ks)
    return mean + spread * mu, spread * math.sqrt(max(var, 1e-12))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10 ** 6), st.integers(2, 25), st.integers(1, 5))
def test_the_posterior_matches_numpys_linear_algebra(seed, n, dims):
    rng = random.Random(seed)
    categorical = [rng.random() < 0.3 for _ in range(dims)]
    points = [[rng.choice([0.25, 0.75]) if c else rng.random() for c in categorical] for _ in range(n)]
    values = [rng.gauss(2.0, 0.5) for _ in range(n)]
    query = [rng.choice([0.25, 0.75]) if c else rng.random() for c in categorical]
    model = gp_fit(points, values, categorical, 0.3, 0.05)
    mine = gp_predict(model, query)
    ref = _numpy_gp(points, values, categorical, 0.3, 0.05, query)
    assert mine[0] == pytest.approx(ref[0], rel=1e-6, abs=1e-6)
    assert mine[1] == pytest.approx(ref[1], rel=1e-5, abs=1e-6)


def test_it_is_confident_near_data_and_returns_to_the_mean_far_away():
    points = [[0.1], [0.2], [0.3]]
    model = gp_fit(points, [1.0, 2.0, 3.0], [False], 0.1, 1e-4)
    near, sd_near = gp_predict(model, [0.2])
    far, sd_far = gp_predict(model, [0.95])
    assert abs(near - 2.0) < 0.01 and sd_near < 0.05
    assert abs(far - 2.0) < 0.01 and sd_far > 0.5  # the prior: the values' mean and spread


def test_duplicate_points_raise_the_jitter_instead_of_failing():
    model = gp_fit([[0.5], [0.5], [0.5]], [1.0, 1.1, 0.9], [False], 0.2, 0.0)
    mean, sd = gp_predict(model, [0.5])
    assert abs(mean - 1.0) < 0.05 and math.isfinite(sd)


def test_expected_improvement_prefers_a_lower_mean_and_more_doubt():
    assert expected_improvement(1.0, 0.1, 1.2) > expected_improvement(1.1, 0.1, 1.2)
    assert expected_improvement(1.5, 0.5, 1.2) > expected_improvement(1.5, 0.1, 1.2)
    assert expected_improvement(1.0, 0.0, 1.2) == pytest.approx(0.2)
    assert expected_improvement(1.5, 0.0, 1.2) == 0.0
