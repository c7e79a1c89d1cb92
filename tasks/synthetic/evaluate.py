"""Run one synthetic trial: read config.py, score it on the pinned surface, print ``metric: X``."""
from __future__ import annotations

import ast
import os
import sys

from surface import SPACE, Surface


def main() -> int:
    with open("config.py") as fh:
        tree = ast.parse(fh.read())
    params = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            params[node.targets[0].id] = ast.literal_eval(node.value)
    missing = sorted(set(SPACE) - set(params))
    if missing:
        print(f"config.py lacks {', '.join(missing)}", file=sys.stderr)
        return 1
    surface = Surface(int(os.environ.get("RECUR_SYNTH_INSTANCE", "0")))
    value = surface(params, int(os.environ.get("RECUR_SEED", "0")))
    if value is None:
        print("diverged: loss is nan", flush=True)
        print("metric: nan")
        return 1
    print(f"metric: {value:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
