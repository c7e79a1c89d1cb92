"""Every built-in family passes the real gate (static policy, then the property tests in the sandbox) on ten
Hypothesis seeds: the offline policy renders these modules and sends them through that same gate, so a family
that fails it for some generated context (freeze_guidance once froze the whole space) is a bug in the library."""
from __future__ import annotations

import pytest

from recur.mechanism_store.builtin import BUILTIN_FAMILIES, builtin_source
from recur.mechanism_store.gate import gate

SEEDS = range(10)


@pytest.mark.parametrize("slug", sorted(BUILTIN_FAMILIES))
def test_builtin_family_passes_the_gate_on_ten_seeds(slug):
    source = builtin_source(slug)
    for seed in SEEDS:
        report = gate(source, max_examples=50, seed=seed)
        assert report.passed, f"{slug}, seed {seed}:\n{report.summary()}"
