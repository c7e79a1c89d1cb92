"""The hook API a mechanism module imports: ``from recur.core.mechanism_api import Mechanism``.

This is the only recur module a mechanism may import (the static policy allows it and the standard-library
allowlist, nothing else). It holds no loop objects on purpose: hooks see and return JSON only.

Contract (the same at every level, see docs/hooks.md):

* ``guide(context) -> context``                 edit the policy's context (guidance, frozen parameters)
* ``propose(context, rng) -> list[proposal]``   add to or replace ``context["proposals"]``
* ``filter(proposals, history) -> list``        drop proposals; must return a subset
* ``select(proposals, history, rng) -> proposal``  choose one of its inputs
* ``accept(outcome, history, rng) -> bool``     keep or discard beyond the default gate

Hooks must be pure: the same JSON in and the same seed give the same answer. All memory a mechanism needs
(tabu lists, bandit counts, elite archives) is derived from ``history``, which is what makes a killed run
resume to the same result and lets the sandbox restart a worker at any time.

Shapes: a *proposal* is ``{"kind": str, "payload": {"params": {name: value}, ...}, "rationale": str}``;
a *history record* is ``{id, level, parent, kind, payload, metric, cost, status, seed, kept}``;
``context`` carries ``level, step, space, frozen, guidance, incumbent, best_metric, maximize, proposals, history``.
"""
from __future__ import annotations

import random
from typing import Any

HOOKS: dict[str, int] = {"guide": 1, "propose": 2, "filter": 2, "select": 3, "accept": 3}
"""Hook name -> number of positional arguments after ``self`` (the static policy checks the arity)."""


class Mechanism:
    """Base class of every mechanism. A subclass overrides any subset of the hooks; the rest stay defaults.

    ``PARAMS`` holds the mechanism's tunable constants so a level can port or re-parameterise it.
    """

    PARAMS: dict[str, Any] = {}

    def guide(self, context: dict) -> dict:
        return context

    def propose(self, context: dict, rng: random.Random) -> list:
        return list(context.get("proposals", []))

    def filter(self, proposals: list, history: list) -> list:
        return list(proposals)

    def select(self, proposals: list, history: list, rng: random.Random) -> dict:
        return proposals[0]

    def accept(self, outcome: dict, history: list, rng: random.Random) -> bool:
        return bool(outcome.get("default_keep", False))


def overridden_hooks(cls: type) -> list[str]:
    """Names of the hooks a Mechanism subclass actually defines (only these are counted for activation)."""
    return [name for name in HOOKS if any(name in vars(klass) for klass in cls.__mro__ if klass is not Mechanism and klass is not object)]
