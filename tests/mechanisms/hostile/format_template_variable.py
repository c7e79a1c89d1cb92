# expect: format-string
# str.format on a template built at run time
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        template = "{0." + "_" + "_class_" + "_}"
        text = template.format(proposals)
        return proposals[0]
