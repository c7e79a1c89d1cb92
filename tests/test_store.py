"""The mechanism store against real git repositories in tmp dirs: the round trip a user sees with plain git,
and robustness (corrupt or missing branches, a dirty work tree, concurrent writers). Every test ends with
``git fsck`` clean: nothing committed is ever lost."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import run_cli
from recur.mechanism_store.builtin import builtin_source
from recur.mechanism_store.store import MechanismStore, StoreError


def git(store: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(store), *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def store_dir(workdir: Path):
    path = workdir / ".recur" / "store"
    yield path
    if (path / ".git").exists():  # the invariant of every test: the object database is whole
        fsck = subprocess.run(["git", "-C", str(path), "fsck", "--full", "--no-dangling"], capture_output=True, text=True)
        assert fsck.returncode == 0 and "error" not in fsck.stderr, fsck.stderr


def test_round_trip_add_promote_reject_port_lineage_diff(store_dir: Path, workdir: Path) -> None:
    store = MechanismStore(store_dir)
    tabu = store.add_candidate(1, "tabu", builtin_source("tabu"), trailers={"Model": "scripted", "Diagnosis": "repeats"})
    ucb = store.add_candidate(1, "ucb_bandit", builtin_source("ucb_bandit"), trailers={"Model": "scripted"})
    assert store.add_candidate(1, "tabu", builtin_source("tabu")).branch == tabu.branch  # same source: idempotent

    promoted = store.promote(tabu.branch, Score=0.031, CI="[0.01, 0.05]", Hook_Calls="filter=12")
    rejected = store.update(ucb.branch, "rejected", Score=-0.004)
    ported = store.port(tabu.branch, 2, Score=None)

    assert promoted.status == "promoted" and promoted.trailers["Hook-Calls"] == "filter=12"
    assert rejected.status == "rejected" and store.info(ucb.branch).trailers["Score"] == "-0.004"
    assert ported.branch.startswith("mech/L2/tabu-") and ported.parent == tabu.branch
    assert store.active_names(1) == ["tabu"] and (store_dir / "mechanisms" / "L1" / "tabu.py").exists()
    assert store.active_names(2) == []  # a port must earn promotion at its new level

    # lineage: the level-1 original, then its level-2 port
    assert [(d, m.branch) for d, m in store.lineage(ported.name)] == [(0, tabu.branch), (1, ported.branch)]
    # diff is exactly what plain git says
    base = store.info(tabu.branch).trailers["Base"]
    assert store.diff(tabu.name) == git(store_dir, "diff", base, tabu.branch).rstrip("\n")
    assert "+class Tabu(Mechanism):" in store.diff(tabu.name).splitlines()
    assert store.diff(tabu.name, ucb.name) == git(store_dir, "diff", tabu.branch, ucb.branch).rstrip("\n")

    # what a user sees with git: every branch, the promotion merge, the port descending from its original
    graph = git(store_dir, "log", "--all", "--graph", "--format=%s%d")
    for branch in (tabu.branch, ucb.branch, ported.branch):
        assert branch in graph
    assert f"promote {tabu.name} at level 1" in graph
    merge = git(store_dir, "log", "-1", "--format=%P", "main").split()
    assert len(merge) == 2 and merge[1] == store.info(tabu.branch).sha
    subprocess.run(["git", "-C", str(store_dir), "merge-base", "--is-ancestor", tabu.sha, ported.sha], check=True)
    assert "Status: rejected" in git(store_dir, "log", "-1", "--format=%B", ucb.branch)

    # the CLI over the same store
    listing = run_cli("mech", "list", cwd=workdir)
    assert listing.returncode == 0 and tabu.name in listing.stdout and "rejected" in listing.stdout
    lineage = run_cli("mech", "lineage", ported.name, cwd=workdir)
    assert lineage.returncode == 0 and tabu.name in lineage.stdout and ported.name in lineage.stdout
    cli_diff = run_cli("mech", "diff", tabu.name, cwd=workdir)
    assert cli_diff.stdout.rstrip("\n") == git(store_dir, "diff", base, tabu.branch).rstrip("\n")


def test_promote_is_idempotent_on_replay(store_dir: Path) -> None:
    store = MechanismStore(store_dir)
    info = store.add_candidate(1, "tabu", builtin_source("tabu"))
    store.promote(info.branch)
    main = git(store_dir, "rev-parse", "main")
    store.promote(info.branch)
    assert git(store_dir, "rev-parse", "main") == main


def test_a_corrupt_ref_is_named_and_the_rest_stays_readable(store_dir: Path, workdir: Path) -> None:
    store = MechanismStore(store_dir)
    good = store.add_candidate(1, "tabu", builtin_source("tabu"))
    bad = store.add_candidate(1, "ucb_bandit", builtin_source("ucb_bandit"))
    ref = store_dir / ".git" / "refs" / "heads" / bad.branch
    ref.write_text("not a sha\n")

    assert [m.branch for m in store.list()] == [good.branch]
    assert bad.branch in store.corrupt
    with pytest.raises(StoreError, match="corrupt"):
        store.info("ucb_bandit")
    listing = run_cli("mech", "list", cwd=workdir)
    assert listing.returncode == 0 and good.name in listing.stdout
    assert f"{bad.branch} is corrupt" in listing.stderr and "Traceback" not in listing.stderr
    show = run_cli("mech", "show", "ucb_bandit", cwd=workdir)
    assert show.returncode == 1 and "corrupt" in show.stderr and "Traceback" not in show.stderr

    ref.write_text(bad.sha + "\n")  # the commit itself was never lost: restoring the ref restores the branch
    assert store.info(bad.branch).sha == bad.sha


def test_a_missing_commit_object_is_named_and_nothing_else_is_lost(store_dir: Path, workdir: Path) -> None:
    store = MechanismStore(store_dir)
    good = store.add_candidate(1, "tabu", builtin_source("tabu"))
    bad = store.update(store.add_candidate(1, "restart", builtin_source("restart")).branch, "rejected")
    obj = store_dir / ".git" / "objects" / bad.sha[:2] / bad.sha[2:]
    saved = obj.read_bytes()
    obj.chmod(0o644)
    obj.unlink()

    assert [m.branch for m in store.list()] == [good.branch]
    assert "missing" in store.corrupt[bad.branch]
    for args in (("mech", "list"), ("mech", "show", "restart"), ("mech", "lineage", "tabu")):
        res = run_cli(*args, cwd=workdir)
        assert "Traceback" not in res.stderr, res.stderr
    assert "restart" in run_cli("mech", "show", "restart", cwd=workdir).stderr
    store.add_candidate(1, "annealing", builtin_source("annealing"))  # the store still takes writes

    obj.write_bytes(saved)  # put the object back so the fixture's fsck checks everything else is whole


def test_a_missing_parent_branch_is_shown_in_the_lineage(store_dir: Path, workdir: Path) -> None:
    store = MechanismStore(store_dir)
    original = store.add_candidate(1, "tabu", builtin_source("tabu"))
    ported = store.port(original.branch, 2)
    git(store_dir, "branch", "-D", original.branch)  # a user deleted the original by hand
    nodes = store.lineage(ported.name)
    assert [m.branch for _, m in nodes] == [ported.branch]
    res = run_cli("mech", "lineage", ported.name, cwd=workdir)
    assert res.returncode == 0 and f"parent {original.branch} is missing" in res.stdout
    missing = run_cli("mech", "show", original.name, cwd=workdir)
    assert missing.returncode == 1 and "no mechanism named" in missing.stderr


def test_a_store_without_main_is_a_clear_error(store_dir: Path, workdir: Path) -> None:
    MechanismStore(store_dir)
    git(store_dir, "checkout", "-q", "-b", "other")
    git(store_dir, "branch", "-D", "main")
    with pytest.raises(StoreError, match="no main branch"):
        MechanismStore(store_dir)
    res = run_cli("mech", "list", cwd=workdir)
    assert res.returncode == 1 and "no main branch" in res.stderr


@pytest.mark.parametrize("text, message", [
    ('mechanisms = ["tabu", "nope"]\n', "nope"),  # a slug main has no module for
    ('mechanisms = ["tabu"\n', "toml-syntax"),  # a hand edit that broke the syntax
    ('mechanisms = ["tabu", "tabu"]\n', "tabu"),  # listed twice
])
def test_a_hand_edited_active_toml_is_checked_by_the_policy(store_dir: Path, workdir: Path, text: str,
                                                              message: str) -> None:
    store = MechanismStore(store_dir)
    store.promote(store.add_candidate(1, "tabu", builtin_source("tabu")).branch)
    assert store.active_names(1) == ["tabu"]
    (store_dir / "active" / "L1.toml").write_text(text)  # what a user might commit with plain git
    git(store_dir, "commit", "-qam", "hand edit")
    with pytest.raises(StoreError, match=rf"active/L1.toml on main: \d+:\d+: .*{message}"):
        store.active_names(1)
    res = run_cli("run", "--model", "scripted", "--task", "synthetic", "--max-trials", "4", cwd=workdir)
    assert res.returncode == 1 and "active/L1.toml on main" in res.stderr and "Traceback" not in res.stderr


def test_a_dirty_work_tree_is_left_alone_and_reported(store_dir: Path, workdir: Path) -> None:
    store = MechanismStore(store_dir)
    first = store.add_candidate(1, "tabu", builtin_source("tabu"))
    store.promote(first.branch)
    note = store_dir / "README.md"
    note.write_text(note.read_text() + "my own note\n")
    edited = store_dir / "mechanisms" / "L1" / "tabu.py"
    edited.write_text(edited.read_text() + "# trying something\n")

    second = store.add_candidate(1, "ucb_bandit", builtin_source("ucb_bandit"))
    store.promote(second.branch)
    assert store.active_names(1) == ["tabu", "ucb_bandit"]
    assert note.read_text().endswith("my own note\n") and edited.read_text().endswith("# trying something\n")
    assert (store_dir / "mechanisms" / "L1" / "ucb_bandit.py").exists()  # untouched files follow main
    assert sorted(store.dirty_files()) == ["README.md", "mechanisms/L1/tabu.py"]
    res = run_cli("mech", "list", cwd=workdir)
    assert res.returncode == 0 and "uncommitted edits (README.md" in res.stderr


LOCK_HOLDER = textwrap.dedent("""
    import fcntl, sys, time
    with open(sys.argv[1], "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def test_a_second_writer_waits_for_the_lock_then_gets_a_clear_error(store_dir: Path) -> None:
    store = MechanismStore(store_dir, lock_timeout=0.5)
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(store_dir / ".git" / "recur-store.lock"), "3"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreError, match="being written by another process"):
            store.add_candidate(1, "tabu", builtin_source("tabu"))
        patient = MechanismStore(store_dir, lock_timeout=30)
        started = time.monotonic()
        info = patient.add_candidate(1, "tabu", builtin_source("tabu"))  # waits for the holder, then writes
        assert time.monotonic() - started > 0.5 and info.status == "candidate"
    finally:
        holder.kill()
        holder.wait()


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from recur.mechanism_store.store import MechanismStore
    store = MechanismStore(Path(sys.argv[1]), lock_timeout=60)
    for i in range(int(sys.argv[3])):
        src = f'\"\"\"Writer {sys.argv[2]} number {i}.\"\"\"\\n'
        info = store.add_candidate(1, f"w{sys.argv[2]}_{i}", src)
        if i % 2 == 0:
            store.promote(info.branch)
""")


def test_concurrent_writers_lose_nothing(store_dir: Path) -> None:
    MechanismStore(store_dir)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(store_dir), str(w), "6"], env=env,
                              stderr=subprocess.PIPE, text=True) for w in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    store = MechanismStore(store_dir)
    assert len(store.list()) == 18 and not store.corrupt
    active = store.active_names(1)
    assert sorted(active) == sorted(f"w{w}_{i}" for w in range(3) for i in range(0, 6, 2))
