# expect: import-not-allowed
# runs a shell command
import subprocess
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        subprocess.run(["sh", "-c", "echo pwned"])
        return proposals[0]
