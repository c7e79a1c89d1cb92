"""Categorical sweep: try every value of every free choice parameter once, one change of the incumbent at a time.

Local moves flip a choice rarely and at random, so a run can spend a hundred trials without ever trying the
value that matters most. This family proposes the next untried single-choice change of the incumbent (a
value counts as tried once any trial ran the incumbent's other choices with it, read from the history; a
parameter's sweep starts again after ``resweep`` kept changes of other parameters, since the best value may
depend on them; 0 = never) and defers to the policy once every value was tried. The order of the untried
options is seeded by the call's rng. The proposal leads every ``lead_every``-th step.
"""
from recur.core.mechanism_api import Mechanism, begin, lead, record_params


class CategoricalSweep(Mechanism):
    """Propose the next untried value of a choice parameter."""

    PARAMS = {"resweep": 0, "lead_every": 1}

    def propose(self, context, rng):
        p = self.PARAMS
        proposals, axes, incumbent = begin(context)
        if incumbent is None:
            return proposals
        resweep = int(p["resweep"])
        tried = {}
        kept_since = 0
        for record in context.get("history") or []:
            params = record_params(record)
            if resweep > 0 and record.get("kept") is True:
                kept_since += 1
                if kept_since >= resweep:
                    tried = {}
                    kept_since = 0
            for name in params:
                if name in axes and axes[name][0] == "choice":
                    tried[repr([name, params[name]])] = True
        options = []
        for name in sorted(axes):
            if axes[name][0] != "choice":
                continue
            for value in axes[name][4]:
                if value != incumbent.get(name) and repr([name, value]) not in tried:
                    options.append([name, value])
        if not options:
            return proposals
        name, value = options[rng.randrange(len(options))]
        mine = [{"kind": "categorical_sweep", "payload": {"params": {name: value}},
                 "rationale": "categorical sweep: untried %s = %r (%d untried options left)" % (name, value, len(options))}]
        return lead(mine, proposals, int(context.get("step") or 0), int(p["lead_every"]))
