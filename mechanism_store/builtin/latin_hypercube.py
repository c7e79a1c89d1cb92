"""Latin hypercube proposals around the incumbent (design of experiments, "orthogonal exploration").

``propose`` adds the ``n`` points of one Latin hypercube over up to ``dims`` non-frozen parameters of
``context["space"]`` (0 = all of them). Each chosen parameter's range is cut into ``n`` strata and every
stratum is used exactly once, so the points spread over each axis instead of clustering where the policy's
prior points. The design is fixed for a block of ``n`` leading turns (seeded by the run's first trial seed
and the block number, both read from ``history``) and rotated so that turn ``i`` of the block gets point ``i``
first: the ``n`` turns of a block cover every stratum even though each call is independent.

Numbers (float/int, linear or log) are sampled in a window of ``radius`` (a fraction of the normalised
range, log-scaled when the space says ``log``) around the incumbent's value, shifted to stay inside the
bounds; ints are rounded; choices and bools are stratified over all their values. ``kind`` is the sorted
parameter names joined by ",", ``payload.params`` holds only the sampled parameters. With ``replace`` = 1
the policy's own proposals are dropped; else the design's points go first every ``lead_every``-th trial
(so the default selector tries them; 0 = never) and after the policy's own otherwise (for a selector).
"""
import json
import random

from recur.core.mechanism_api import Mechanism, begin, from_unit, to_unit


def _design_seed(history):
    """A seed fixed for a whole run (the first record's seed) so consecutive calls share one design."""
    for record in history:
        if isinstance(record, dict):
            seed = record.get("seed")
            if isinstance(seed, int) and not isinstance(seed, bool):
                return seed
            return 0
    return 0


class LatinHypercube(Mechanism):
    """Propose the points of a Latin hypercube over the free parameters, centred on the incumbent."""

    PARAMS = {"n": 4, "radius": 0.25, "dims": 3, "lead_every": 2, "replace": 0}

    def propose(self, context, rng):
        p = self.PARAMS
        proposals, axes, incumbent = begin(context)  # no usable space: no axes, proposals unchanged below
        history = context.get("history") or []
        incumbent = incumbent or {}
        names = sorted(axes)
        if not names:
            return proposals
        n = max(int(p.get("n", 4)), 1)
        lead = max(int(p.get("lead_every", 2)), 0)
        turn = len(history) // max(lead, 1)
        position = turn % n
        # One design per block of n trials, the same for every call in the block, so the n trials of a block
        # together cover every stratum of every chosen parameter. The call's rng only breaks the tie when
        # there is no history to take the run's seed from.
        if history:
            design = random.Random(json.dumps([_design_seed(history), turn // n]))
        else:
            design = random.Random(rng.random())
        dims = int(p.get("dims", 3))
        if 0 < dims < len(names):
            names = sorted(design.sample(names, dims))
        radius = min(max(float(p.get("radius", 0.25)), 0.0), 0.5)
        columns = {}
        for name in names:
            axis = axes[name]
            strata = list(range(n))
            design.shuffle(strata)
            lo = 0.0
            hi = 1.0
            if axis[0] != "choice":
                centre = to_unit(incumbent.get(name), axis)
                lo = centre - radius
                hi = centre + radius
                if lo < 0.0:
                    hi = min(hi - lo, 1.0)
                    lo = 0.0
                if hi > 1.0:
                    lo = max(lo - (hi - 1.0), 0.0)
                    hi = 1.0
            column = []
            for i in range(n):
                u = lo + (strata[i] + design.random()) / n * (hi - lo)
                column.append(from_unit(u, axis))
            columns[name] = column
        kind = ",".join(names)
        added = []
        for k in range(n):
            i = (position + k) % n
            params = {}
            for name in names:
                params[name] = columns[name][i]
            added.append(
                {
                    "kind": kind,
                    "payload": {"params": params},
                    "rationale": "Latin hypercube point %d/%d over %s (radius %.3g of each range around the incumbent)"
                    % (i + 1, n, kind, radius),
                }
            )
        if int(p.get("replace", 0)):
            return added
        if lead > 0 and len(history) % lead == 0:
            return added + proposals
        return proposals + added
