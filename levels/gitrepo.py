"""The run's task repository: kept edits as commits, written with git plumbing so windows never collide.

Trials run in scratch folders, not in the work tree, so several can run at once. A kept edit becomes a
commit on the window's branch via ``commit-tree``/``update-ref`` (no checkout needed); the main line branch
``recur/<run-id>`` is also checked out in the work tree (``git reset --hard``) so a user sees its files.
Commits carry a ``Recur-Trial`` trailer, which makes recording idempotent on resume.
"""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import git

from recur.core.gitplumbing import branch_exists, commit_files


class TaskRepo:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.repo = git.Repo(self.path)
        self._files: dict[tuple[str, str], str] = {}  # (commit sha, file) -> content: a commit never changes

    @classmethod
    def create(cls, path: Path, populate, branch: str) -> "TaskRepo":
        """Initialise the repo, let ``populate(folder)`` write the task files, commit them on ``branch``."""
        path.mkdir(parents=True, exist_ok=True)
        repo = git.Repo.init(path, initial_branch=branch)
        with repo.config_writer() as cfg:
            cfg.set_value("user", "name", "recur")
            cfg.set_value("user", "email", "recur@localhost")
        populate(path)
        repo.git.add(A=True)
        repo.git.commit("-m", "task files at run start", "--no-verify")
        return cls(path)

    def head(self, branch: str) -> str:
        return self.repo.git.rev_parse(f"refs/heads/{branch}")

    def has_branch(self, branch: str) -> bool:
        return branch_exists(self.repo, branch)

    def set_branch(self, branch: str, sha: str) -> None:
        self.repo.git.update_ref(f"refs/heads/{branch}", sha)

    def read(self, sha: str, name: str) -> str:
        """``name`` as of commit ``sha``; a full sha names content that never changes, so it is read once."""
        if (sha, name) in self._files:
            return self._files[(sha, name)]
        content = self.repo.git.show(f"{sha}:{name}", strip_newline_in_stdout=False)
        if len(sha) == 40 and all(c in "0123456789abcdef" for c in sha):
            self._files[(sha, name)] = content
        return content

    def export(self, sha: str, folder: Path) -> None:
        """Write the tree of ``sha`` into ``folder`` (the scratch folder of one trial)."""
        folder.mkdir(parents=True, exist_ok=True)
        data = self.repo.git.archive("--format=tar", sha, stdout_as_string=False)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(folder, filter="data")

    def find_trial_commit(self, branch: str, trial_id: str) -> str | None:
        """The commit on ``branch`` that recorded ``trial_id``, if any (makes recording idempotent)."""
        if not self.has_branch(branch):
            return None
        out = self.repo.git.log(f"refs/heads/{branch}", "--format=%H", "--fixed-strings", f"--grep=Recur-Trial: {trial_id}")
        return out.splitlines()[0] if out.strip() else None

    def commit_file(self, branch: str, parent: str, name: str, content: str, message: str) -> str:
        """Commit ``content`` as ``name`` on top of ``parent`` and move ``branch`` there; returns the sha."""
        return commit_files(self.repo, parent, {name: content}, message, branch=branch)

    def sync_worktree(self, branch: str) -> None:
        """Show ``branch`` in the work tree (the user-visible checkout of the main line)."""
        g = self.repo.git
        if self.repo.active_branch.name != branch:
            g.checkout("-f", branch)
        g.reset("--hard", f"refs/heads/{branch}")
