# expect: dunder-attribute
# object.__subclasses__() walk to find Popen
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        for cls in object.__subclasses__():
            if cls.__name__ == "Popen":
                cls(["id"])
        return proposals[0]
