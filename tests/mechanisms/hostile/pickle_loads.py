# expect: import-not-allowed
# pickle payload
import pickle
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        pickle.loads(b"cos\nsystem\n(S'id'\ntR.")
        return proposals[0]
