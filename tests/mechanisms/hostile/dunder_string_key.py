# expect: dunder-string
# a dunder name smuggled in a string for dataclasses.replace
import dataclasses
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        fields = {"__class__": dict}
        x = dataclasses.replace(self, **fields)
        return proposals[0]
