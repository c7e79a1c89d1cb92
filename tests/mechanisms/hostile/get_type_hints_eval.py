# expect: module-attribute
# typing.get_type_hints evaluates a string annotation
import typing
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        def probe(x: "open('/etc/passwd').read()"):
            return x

        hints = typing.get_type_hints(probe)
        return proposals[0]
