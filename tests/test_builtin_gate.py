"""Every built-in family passes the real gate (static policy, then the property tests in the sandbox) on three
Hypothesis seeds of 50 examples (a run gates each module once, on a seed drawn from its text): the offline
policy renders these modules and sends them through that same gate, so a family that fails it for some
generated context (freeze_guidance once froze the whole space) is a bug in the library."""
from __future__ import annotations

import pytest

from recur.mechanism_store.builtin import BUILTIN_FAMILIES, builtin_source
from recur.mechanism_store.gate import gate

SEEDS = range(3)


@pytest.mark.long(seconds=8)
@pytest.mark.parametrize("slug", sorted(BUILTIN_FAMILIES))
def test_builtin_family_passes_the_gate_on_three_seeds(slug):
    source = builtin_source(slug)
    for seed in SEEDS:
        report = gate(source, max_examples=50, seed=seed)
        assert report.passed, f"{slug}, seed {seed}:\n{report.summary()}"


UNSAFE = "import os\nfrom recur.core.mechanism_api import Mechanism\n\nclass M(Mechanism):\n    def propose(self, context, rng):\n        return os.listdir('/')\n"


@pytest.mark.parametrize("source", [builtin_source("tpe"), UNSAFE], ids=["passes", "unsafe"])
def test_a_gate_verdict_is_cached_on_disk_per_source_and_a_damaged_entry_is_recomputed(tmp_path, source):
    from recur.mechanism_store.gate import cached_gate

    first = cached_gate(source, tmp_path)
    [entry] = list((tmp_path / "gate").iterdir())
    assert cached_gate(source, tmp_path) == first  # read back: the same verdict, violations and properties
    assert first.passed == (source != UNSAFE) and (first.violations != []) == (source == UNSAFE)
    entry.write_text("{not json")
    assert cached_gate(source, tmp_path) == first and entry.read_text().startswith("{\"passed\"")
    assert cached_gate(source + "\n# changed\n", tmp_path) is not None and len(list((tmp_path / "gate").iterdir())) == 2
