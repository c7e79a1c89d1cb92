# expect: module-attribute
# json.decoder is a module (and a path to re/sys)
import json
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        d = json.decoder
        return proposals[0]
