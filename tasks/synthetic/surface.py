"""The pinned evaluator of the synthetic task: a random response surface shaped like a hyperparameter landscape.

Each instance (one per seed) draws: several Gaussian basins (local optima) of different depth and width, a
ridge where learning rate and batch size trade off (an interaction), per-choice offsets for categorical
parameters, a crash region (learning rate too high with too little warm-up diverges), and seeded trial noise.
Coordinates are normalised to [0, 1] (log scale where the parameter is log-scaled). The surface is defined
without reference to any search mechanism, and is not tuned to favour one. Lower is better, like val_bpb.
"""
from __future__ import annotations

import math
import random

SPACE = {
    "LEARNING_RATE": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
    "BATCH_SIZE": {"type": "int", "low": 4, "high": 256, "log": True},
    "DEPTH": {"type": "int", "low": 1, "high": 12},
    "WIDTH": {"type": "choice", "choices": [64, 128, 256, 384, 512]},
    "DROPOUT": {"type": "float", "low": 0.0, "high": 0.5},
    "WARMUP_FRAC": {"type": "float", "low": 0.0, "high": 0.3},
    "WEIGHT_DECAY": {"type": "float", "low": 1e-4, "high": 0.3, "log": True},
    "BETA2": {"type": "float", "low": 0.8, "high": 0.999},
    "ACTIVATION": {"type": "choice", "choices": ["gelu", "relu", "silu", "tanh"]},
    "SCHEDULE": {"type": "choice", "choices": ["cosine", "linear", "constant"]},
}
NUMERIC = [n for n, s in SPACE.items() if s["type"] in ("float", "int")]
CHOICES = [n for n, s in SPACE.items() if s["type"] == "choice"]


def unit(name: str, value: float) -> float:
    """Map a parameter value to [0, 1] (log scale for log parameters)."""
    s = SPACE[name]
    lo, hi = s["low"], s["high"]
    if s.get("log"):
        return (math.log(value) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return (value - lo) / (hi - lo)


class Surface:
    def __init__(self, instance: int):
        rng = random.Random(f"synthetic-surface-{instance}")
        d = len(NUMERIC)
        self.basins = []
        for k in range(rng.randint(3, 5)):
            centre = [rng.uniform(0.1, 0.9) for _ in range(d)]
            depth = rng.uniform(0.4, 1.0) if k else 1.2  # one global basin, several shallower local ones
            width = [rng.uniform(0.08, 0.35) for _ in range(d)]
            self.basins.append((centre, depth, width))
        self.ridge_offset = rng.uniform(-0.2, 0.2)
        self.ridge_weight = rng.uniform(0.3, 0.8)
        self.choice_offsets = {n: {str(c): rng.uniform(0.0, 0.25) for c in SPACE[n]["choices"]} for n in CHOICES}
        for n in CHOICES:  # one best choice per categorical parameter
            self.choice_offsets[n][str(rng.choice(SPACE[n]["choices"]))] = 0.0
        self.crash_lr = rng.uniform(0.75, 0.9)
        self.noise = rng.uniform(0.01, 0.03)
        self.base = 2.6

    def clean(self, params: dict) -> float | None:
        """Noise-free metric, or None inside the crash region."""
        u = [min(1.0, max(0.0, unit(n, float(params[n])))) for n in NUMERIC]
        lr = u[NUMERIC.index("LEARNING_RATE")]
        warm = u[NUMERIC.index("WARMUP_FRAC")]
        if lr > self.crash_lr + 0.3 * warm:
            return None
        gain = 0.0
        for centre, depth, width in self.basins:
            dist = sum(((x - c) / w) ** 2 for x, c, w in zip(u, centre, width))
            gain = max(gain, depth * math.exp(-0.5 * dist))
        bs = u[NUMERIC.index("BATCH_SIZE")]
        ridge = self.ridge_weight * (lr - bs - self.ridge_offset) ** 2  # lr and batch size must move together
        cat = sum(self.choice_offsets[n][str(params[n])] for n in CHOICES)
        return self.base - gain + ridge + cat

    def __call__(self, params: dict, seed: int) -> float | None:
        value = self.clean(params)
        if value is None:
            return None
        return value + random.Random(f"noise-{seed}").gauss(0.0, self.noise)
