"""Scale of the mechanism store: build a store with N mechanism branches (git fast-import), time
`recur mech list` and `recur mech lineage` on it (whole commands, start-up included).

Usage: python bench/bench_store_scale.py [N]   (default 10000; goal: each under 1 s)
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from recur.mechanism_store.store import MechanismStore, format_trailers

RECUR = shutil.which("recur") or str(Path(sys.executable).parent / "recur")
FAMILIES = ["tabu", "ucb_bandit", "latin_hypercube", "annealing", "restart", "elite_crossover", "freeze_guidance"]


def build(root: Path, n: int) -> str:
    store = MechanismStore(root / ".recur" / "store")
    main = store.main_sha
    lines: list[bytes] = []
    names = []
    for i in range(n):
        fam = FAMILIES[i % len(FAMILIES)]
        level = 1 + (i % 3 == 2)
        name = f"{fam}-{i:08x}"
        branch = f"mech/L{level}/{name}"
        parent = f"mech/L{level - 1 if level > 1 else 1}/{names[i - 7]}" if i >= 7 and i % 5 == 0 else None
        names.append(name)
        msg = f"add {fam}\n\n" + format_trailers({"Level": level, "Slug": fam, "Parent": parent, "Base": main,
                                                  "Score": f"{(i % 97) / 1000:.3f}", "Hook-Calls": "filter=3",
                                                  "Status": "rejected"}) + "\n"
        body = f"mechanisms/L{level}/{fam}.py"
        content = f'"""{name}"""\n'.encode()
        msgb = msg.encode()
        lines += [f"commit refs/heads/{branch}\n".encode(), b"committer recur <recur@localhost> 1700000000 +0000\n",
                  f"data {len(msgb)}\n".encode(), msgb, f"from {main}\n".encode(),
                  f"M 100644 inline {body}\n".encode(), f"data {len(content)}\n".encode(), content, b"\n"]
    subprocess.run(["git", "fast-import", "--quiet"], cwd=store.path, input=b"".join(lines), check=True)
    for level in (1, 2):  # what the store does as it grows (fast-import leaves loose refs)
        store.pack_refs_if_many(Path(store.repo.git_dir) / "refs" / "heads" / "mech" / f"L{level}")
    return names[n - 1 - ((n - 1) % 5)]


def timed(args: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    res = subprocess.run([RECUR, *args], cwd=cwd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return time.perf_counter() - t0


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        t0 = time.perf_counter()
        leaf = build(root, n)
        print(f"built a store with {n} mechanism branches in {time.perf_counter() - t0:.1f} s")
        for _ in range(2):  # the first call warms git's caches
            lst = timed(["mech", "list"], root)
            lin = timed(["mech", "lineage", leaf], root)
        print(f"recur mech list: {lst:.2f} s    recur mech lineage {leaf}: {lin:.2f} s    (goal: each < 1 s)")
