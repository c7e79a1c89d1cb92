"""Committing files to a branch with git plumbing (temporary index, ``commit-tree``, ``update-ref``).

Blobs go through GitPython's object database; trees and commits through git's own plumbing, because
``read-tree``/``update-index``/``write-tree`` on a temporary index changes a few paths of a base tree without
touching any work tree, and ``update-ref NEW OLD`` is the compare-and-swap that makes a concurrent writer fail
(GitPython's ``Commit.create_from_tree`` and ``IndexFile`` would need the same commands' logic rewritten).

Used by the task repo and the mechanism store: a commit never needs a checkout, so several writers (parallel
windows, a user with a dirty work tree) cannot trample each other's files, and ``update-ref`` with the old
value makes a concurrent move of the branch fail loudly instead of losing a commit.
"""
from __future__ import annotations

import io
import os
import tempfile
from typing import Mapping

import git
from gitdb import IStream


def write_blob(repo: git.Repo, content: str) -> str:
    """Store ``content`` as a blob through GitPython's object database (no temporary file, no subprocess)."""
    data = content.encode("utf-8")
    return repo.odb.store(IStream(b"blob", len(data), io.BytesIO(data))).hexsha.decode()


def commit_files(
    repo: git.Repo,
    base: str | None,
    files: Mapping[str, str | None],
    message: str,
    parents: list[str] | None = None,
    branch: str | None = None,
    expect_old: str | None = None,
) -> str:
    """Commit the tree of ``base`` with ``files`` written (None deletes) and return the new sha.

    ``parents`` default to ``[base]``. With ``branch``, the ref is moved there; ``expect_old`` makes the move
    conditional on the branch still pointing where the caller read it (a concurrent writer then fails).
    """
    g = repo.git
    fd, index = tempfile.mkstemp(prefix="recur-index-")
    os.close(fd)
    os.unlink(index)
    env = {"GIT_INDEX_FILE": index}
    try:
        if base:
            g.read_tree(base, env=env)
        for path, content in files.items():
            if content is None:
                g.update_index("--force-remove", path, env=env)
            else:
                g.update_index("--add", "--cacheinfo", f"100644,{write_blob(repo, content)},{path}", env=env)
        tree = g.write_tree(env=env)
    finally:
        if os.path.exists(index):
            os.unlink(index)
    parent_args: list[str] = []
    for p in parents if parents is not None else ([base] if base else []):
        parent_args += ["-p", p]
    sha = g.commit_tree(tree, *parent_args, "-m", message)
    if branch:
        ref = branch if branch.startswith("refs/") else f"refs/heads/{branch}"
        if expect_old:
            g.update_ref(ref, sha, expect_old)
        else:
            g.update_ref(ref, sha)
    return sha


def branch_exists(repo: git.Repo, branch: str) -> bool:
    try:
        repo.git.rev_parse("--verify", "--quiet", f"refs/heads/{branch}")
        return True
    except git.GitCommandError:
        return False
