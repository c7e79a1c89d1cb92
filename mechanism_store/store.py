"""The mechanism store: a git repository (default ``.recur/store``) whose branches are mechanism candidates.

Layout (plain git works on it too):

* ``main`` holds the promoted state: ``mechanisms/L<k>/<slug>.py`` and ``active/L<k>.toml`` (``mechanisms = [...]``,
  the mechanisms active at level k, in hook order).
* each candidate is a branch ``mech/L<k>/<slug>-<hash>`` off main (or off its parent mechanism's branch): one
  commit adding the module and enabling it in ``active/L<k>.toml``. Metadata lives in commit trailers
  (Level, Parent, Model, Diagnosis, Score, CI, Hook-Calls, Status); a status change is a new (empty) commit
  on the branch with updated trailers, so ``git log`` shows the whole story.
* promotion merges the branch into main (a two-parent commit); rejected branches stay, marked by Status.

All writes go through git plumbing under a lock file, never through the work tree: a second writer waits for
the lock (then gets a clear error), a user's uncommitted edits in the work tree are left alone and reported
(``dirty_files``), and a branch whose ref or commit is corrupt is reported by name (``corrupt``) while every
other branch stays readable. Nothing already committed is rewritten.
"""
from __future__ import annotations

import hashlib
import os
import re
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import filelock
import git

from recur.core.gitplumbing import branch_exists, commit_files

STATUSES = ("candidate", "promoted", "confirmed", "rejected", "inactive", "unraced", "screened", "shortlisted", "unsafe", "budget", "applied")
TRAILER_KEYS = ("Level", "Parent", "Model", "Diagnosis", "Score", "CI", "P-Value", "Hook-Calls", "Hook-Effects", "Pairs", "Screen",
                "Trials", "Status", "Family", "Held-Out", "Transfer")
_SLUG = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


class StoreError(Exception):
    """A store operation failed (corrupt or missing branch, concurrent writer, unknown name): one clear line."""


@dataclass
class MechanismInfo:
    """One mechanism branch as listed: name, level, status and the rest of its trailers."""

    branch: str
    sha: str
    trailers: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.branch.split("/", 2)[-1]

    @property
    def slug(self) -> str:
        return self.trailers.get("Slug") or self.name.rsplit("-", 1)[0]

    @property
    def level(self) -> int:
        return int(self.trailers.get("Level", self.branch.split("/")[1][1:]))

    @property
    def status(self) -> str:
        return self.trailers.get("Status", "candidate")

    @property
    def parent(self) -> str | None:
        return self.trailers.get("Parent") or None

    @property
    def score(self) -> float | None:
        try:
            return float(self.trailers["Score"])
        except (KeyError, ValueError):
            return None


def format_trailers(trailers: dict[str, Any]) -> str:
    lines = []
    for key, value in trailers.items():
        if value is None or value == "":
            continue
        text = " ".join(str(value).split())  # trailers are single lines
        lines.append(f"{key}: {text}")
    return "\n".join(lines)


TRAILERS = "%(trailers:only,unfold)"
"""git's own trailer parser (``interpret-trailers``) as a format placeholder: one ``Key: value`` line per
trailer, continuation lines unfolded, so ``for-each-ref`` reads every branch's trailers in one call."""


def parse_trailers(block: str) -> dict[str, str]:
    """``Key: value`` lines as git printed them for ``TRAILERS``."""
    out = {}
    for line in block.splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            out[key.strip()] = value.strip()
    return out


def module_path(level: int, slug: str) -> str:
    """Modules live per level, so a port to another level never overwrites the original; a new variant with
    the same slug at the same level replaces the old one when promoted (it is a patch of it)."""
    return f"mechanisms/L{level}/{slug}.py"


def active_toml(names: list[str]) -> str:
    inner = ", ".join(f'"{n}"' for n in names)
    return f"# mechanisms active at this level, in hook order\nmechanisms = [{inner}]\n"


_LIST_FORMAT = f"--format=%(refname:strip=2)%00%(objectname)%00{TRAILERS}%01"
_BROKEN_REF = re.compile(r"ignoring broken ref refs/heads/(\S+)")


class MechanismStore:
    def __init__(self, path: Path, create: bool = True, lock_timeout: float = 15.0):
        self.path = Path(path)
        self.lock_timeout = lock_timeout
        self.corrupt: dict[str, str] = {}  # branch -> what is wrong with it, found by the last list()
        try:
            if (self.path / ".git").exists():
                self.repo = git.Repo(self.path)
            elif create:
                self.repo = self._init()
            else:
                raise StoreError(f"no mechanism store at {self.path}")
        except git.InvalidGitRepositoryError as exc:
            raise StoreError(f"{self.path} is not a readable git repository: {exc}") from None
        try:
            self.main_sha = self.repo.git.rev_parse("--verify", "refs/heads/main")
        except git.GitCommandError:
            raise StoreError(f"the store at {self.path} has no main branch (corrupt store?)") from None

    def _init(self) -> git.Repo:
        self.path.mkdir(parents=True, exist_ok=True)
        repo = git.Repo.init(self.path, initial_branch="main")
        with repo.config_writer() as cfg:
            cfg.set_value("user", "name", "recur")
            cfg.set_value("user", "email", "recur@localhost")
        readme = ("# recur mechanism store\n\nmain: promoted mechanisms and active/L<k>.toml; "
                  "branches mech/L<k>/<slug>-<hash>: candidates, with metadata in commit trailers.\n")
        sha = commit_files(repo, None, {"README.md": readme}, "store created", parents=[], branch="main")
        repo.git.reset("--hard", sha)
        return repo

    # ------------------------------------------------------------ locking
    @contextmanager
    def _writing(self) -> Iterator[None]:
        lock = filelock.FileLock(Path(self.repo.git_dir) / "recur-store.lock", timeout=self.lock_timeout)
        try:
            lock.acquire(poll_interval=0.05)
        except filelock.Timeout:
            raise StoreError(f"the mechanism store {self.path} is being written by another process "
                             f"(waited {self.lock_timeout:.0f} s); try again when it is done") from None
        try:
            self.main_sha = self._rev("main")
            yield
        except git.GitCommandError as exc:
            raise StoreError(f"git failed on the store: {exc.stderr.strip() or exc}") from None
        finally:
            lock.release()

    def _rev(self, ref: str) -> str:
        try:
            return self.repo.git.rev_parse("--verify", "--quiet", f"{ref}^{{commit}}")
        except git.GitCommandError:
            raise StoreError(f"branch or commit {ref!r} is missing or corrupt in the store") from None

    def _sync_worktree(self, old_main: str) -> None:
        """Show the new main in the work tree. With the user's edits there, move only the files they did not
        touch (git's two-tree merge, as ``git checkout`` does); if that would clash, leave the work tree as is."""
        if not self.dirty_files():
            self.repo.git.reset("--hard", "refs/heads/main")
            return
        try:
            self.repo.git.read_tree("-m", "-u", old_main, "refs/heads/main")
        except git.GitCommandError:
            pass

    def pack_refs_if_many(self, folder: Path, limit: int = 256) -> None:
        """Fold loose branch refs into packed-refs once there are many: listing 10,000 loose ref files takes
        git 2.5x longer than reading one packed file. Safe while others read (git locks packed-refs)."""
        try:
            with os.scandir(folder) as entries:
                loose = sum(1 for _ in entries)
        except OSError:
            return
        if loose > limit:
            self.repo.git.pack_refs("--all")

    def dirty_files(self) -> list[str]:
        """Files the user changed in the store's work tree: recur commits around them and never touches them."""
        return self.repo.git.diff("--name-only").splitlines()

    def _read(self, rev: str, path: str) -> str | None:
        try:
            return self.repo.git.show(f"{rev}:{path}", strip_newline_in_stdout=False)
        except git.GitCommandError:
            return None

    def active_names(self, level: int, rev: str = "main") -> list[str]:
        """The slugs ``active/L<level>.toml`` enables on ``rev``, checked by the policy's ``check_toml`` (the file
        is the one a user may edit by hand in the store's git): a broken one is a StoreError naming line and
        column, never a half-read list."""
        from recur.mechanism_store.policy import check_toml

        path = f"active/L{level}.toml"
        text = self._read(rev, path)
        if not text:
            return []
        listing = self.repo.git.ls_tree("--name-only", rev, f"mechanisms/L{level}/")
        known = {Path(name).stem for name in listing.splitlines() if name.endswith(".py")}
        problems = check_toml(text, known)
        if problems:
            raise StoreError(f"{path} on {rev}: {problems[0]} (fix it with git in {self.path})")
        return list(tomllib.loads(text).get("mechanisms", []))

    # ------------------------------------------------------------- writes
    def add_candidate(self, level: int, slug: str, source: str, *, parent: str | None = None,
                      trailers: dict[str, Any] | None = None, title: str | None = None) -> MechanismInfo:
        """Commit a gated module as branch ``mech/L<level>/<slug>-<hash>``; idempotent for the same source."""
        if not _SLUG.match(slug):
            raise StoreError(f"invalid mechanism slug {slug!r} (lowercase letters, digits, _; start with a letter)")
        digest = hashlib.sha256(f"{level}\n{parent or ''}\n{source}".encode()).hexdigest()[:8]
        branch = f"mech/L{level}/{slug}-{digest}"
        with self._writing():
            if self._exists(branch):
                return self.info(branch)
            base = self._rev(f"refs/heads/{parent}") if parent else self.main_sha
            names = [n for n in self.active_names(level, base) if n != slug] + [slug]
            meta = {"Level": level, "Slug": slug, "Parent": parent, "Base": base, **(trailers or {}), "Status": "candidate"}
            message = f"{title or f'add {slug} at level {level}'}\n\n{format_trailers(meta)}\n"
            commit_files(self.repo, base, {f"mechanisms/L{level}/{slug}.py": source, f"active/L{level}.toml": active_toml(names)},
                         message, branch=branch)
            self.pack_refs_if_many(Path(self.repo.git_dir) / "refs" / "heads" / "mech" / f"L{level}")
            return self.info(branch)

    def update(self, name: str, status: str | None = None, message: str | None = None, **trailers: Any) -> MechanismInfo:
        """Record new metadata (status, score, CI, hook calls...) as an empty commit on the branch."""
        if status is not None and status not in STATUSES:
            raise StoreError(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
        with self._writing():
            info = self.info(name)
            meta = {**info.trailers, **{k.replace("_", "-"): v for k, v in trailers.items()}}
            if status:
                meta["Status"] = status
            title = message or f"{info.name}: {status or 'update'}"
            commit_files(self.repo, info.sha, {}, f"{title}\n\n{format_trailers(meta)}\n", branch=info.branch,
                         expect_old=info.sha)
            return self.info(info.branch)

    def promote(self, name: str, status: str = "promoted", **trailers: Any) -> MechanismInfo:
        """Mark promoted and merge into main: main gets the module and the mechanism joins active/L<k>.toml.

        Idempotent: a branch already merged into main is not merged again (resume replays promotions)."""
        current = self.info(name)
        try:
            self.repo.git.merge_base("--is-ancestor", current.sha, "refs/heads/main")
            if current.status == status:
                return current
        except git.GitCommandError:
            pass
        info = self.update(name, status, **trailers)
        with self._writing():
            module = self._read(info.sha, module_path(info.level, info.slug))
            if module is None:
                raise StoreError(f"{info.branch} has no {module_path(info.level, info.slug)} (corrupt branch)")
            names = [n for n in self.active_names(info.level) if n != info.slug] + [info.slug]
            message = f"promote {info.name} at level {info.level}\n\n{format_trailers({'Merged': info.branch, 'Level': info.level})}\n"
            commit_files(self.repo, self.main_sha, {module_path(info.level, info.slug): module,
                                                    f"active/L{info.level}.toml": active_toml(names)},
                         message, parents=[self.main_sha, info.sha], branch="main", expect_old=self.main_sha)
            self._sync_worktree(self.main_sha)
        return self.info(info.branch)

    def deactivate(self, level: int, slug: str) -> None:
        """Take a mechanism out of main's active list for a level (its module and history stay)."""
        with self._writing():
            names = [n for n in self.active_names(level) if n != slug]
            commit_files(self.repo, self.main_sha, {f"active/L{level}.toml": active_toml(names)},
                         f"deactivate {slug} at level {level}\n", branch="main", expect_old=self.main_sha)
            self._sync_worktree(self.main_sha)

    def port(self, name: str, to_level: int, source: str | None = None, **trailers: Any) -> MechanismInfo:
        """Recursive bootstrapping: the same mechanism as a new candidate at another level (Parent = original)."""
        info = self.info(name)
        module = source if source is not None else self._read(info.sha, module_path(info.level, info.slug))
        if module is None:
            raise StoreError(f"{info.branch} has no module to port (corrupt branch)")
        meta = {"Model": info.trailers.get("Model"), "Family": info.trailers.get("Family"),
                "Diagnosis": f"port of {info.name} from level {info.level}", **trailers}
        return self.add_candidate(to_level, info.slug, module, parent=info.branch, trailers=meta,
                                  title=f"port {info.name} to level {to_level}")

    # -------------------------------------------------------------- reads
    def _exists(self, branch: str) -> bool:
        return branch_exists(self.repo, branch)

    def resolve(self, name: str) -> str:
        """A branch name from a full name, ``<slug>-<hash>``, or a unique slug."""
        if name.startswith("mech/") and self._exists(name):
            return name
        code, out, _ = self.repo.git.for_each_ref("--format=%(refname:strip=2)", f"refs/heads/mech/*/{name}",
                                                  with_extended_output=True, with_exceptions=False)
        direct = out.split() if code == 0 else []
        if len(direct) == 1 and self._exists(direct[0]):
            return direct[0]
        infos = self.list()
        matches = [m.branch for m in infos if m.name == name or m.branch.endswith("/" + name)]
        if not matches:
            matches = [m.branch for m in infos if m.slug == name]
        broken = [b for b in self.corrupt if b == name or b.endswith("/" + name) or b.rsplit("/", 1)[-1].rsplit("-", 1)[0] == name]
        if broken and not matches:
            raise StoreError(f"mechanism branch {broken[0]} is corrupt: {self.corrupt[broken[0]]}; the other branches "
                             f"are intact (`git -C {self.path} fsck` for details; `git -C {self.path} update-ref -d "
                             f"refs/heads/{broken[0]}` removes it)")
        if not matches:
            raise StoreError(f"no mechanism named {name!r} in the store (see `recur mech list`)")
        if len(set(matches)) > 1:
            raise StoreError(f"{name!r} is ambiguous: {', '.join(sorted(set(matches))[:6])}")
        return matches[0]

    def info(self, name: str) -> MechanismInfo:
        branch = self.resolve(name)
        sha = self._rev(f"refs/heads/{branch}")
        try:
            message = self.repo.git.log("-1", f"--format={TRAILERS}", sha)
        except git.GitCommandError:
            raise StoreError(f"mechanism branch {branch} is corrupt: its commit {sha[:12]} cannot be read "
                             f"(`git -C {self.path} fsck` for details)") from None
        return MechanismInfo(branch, sha, parse_trailers(message))

    def list(self, level: int | None = None, status: str | None = None) -> list[MechanismInfo]:
        """All readable mechanism branches with their trailers, in one ``for-each-ref`` call (fast on 10,000
        branches). Corrupt branches are left out and named in ``self.corrupt``."""
        out = self._scan()
        infos = []
        for record in out.split("\x01"):
            record = record.strip("\n")
            if not record:
                continue
            parts = record.split("\x00", 2)
            if len(parts) < 3:
                continue
            info = MechanismInfo(parts[0], parts[1], parse_trailers(parts[2]))
            if level is not None and info.level != level:
                continue
            if status is not None and info.status != status:
                continue
            infos.append(info)
        return infos

    def _scan(self) -> str:
        code, out, err = self.repo.git.for_each_ref("refs/heads/mech/", _LIST_FORMAT, with_extended_output=True,
                                                    with_exceptions=False)
        self.corrupt = {m.group(1): "its ref does not name a valid commit" for m in _BROKEN_REF.finditer(err)}
        if code == 0:
            return out
        # A commit object is missing or unreadable: find which branches, and list the others.
        refs = [line.split(" ", 1) for line in self.repo.git.for_each_ref(
            "refs/heads/mech/", "--format=%(refname:strip=2) %(objectname)").splitlines() if line]
        good = []
        for branch, sha in refs:
            if self._object_type(sha) != "commit":
                self.corrupt[branch] = f"its commit {sha[:12]} is missing from the object database"
            else:
                good.append(f"refs/heads/{branch}")
        if not good:
            return ""
        code, out, err = self.repo.git.for_each_ref(_LIST_FORMAT, *good, with_extended_output=True, with_exceptions=False)
        if code != 0:
            raise StoreError(f"the store at {self.path} cannot be read: {err.strip().splitlines()[-1]} "
                             f"(run `git -C {self.path} fsck`)")
        return out

    def _object_type(self, sha: str) -> str | None:
        """The object's type through GitPython's object database (one long-lived ``cat-file`` it keeps), or
        None when the object is missing or unreadable."""
        try:
            return self.repo.odb.info(bytes.fromhex(sha)).type.decode()
        except (ValueError, OSError, git.GitCommandError):
            return None

    def source(self, name: str) -> str:
        info = self.info(name)
        text = self._read(info.sha, module_path(info.level, info.slug))
        if text is None:
            raise StoreError(f"{info.branch} has no {module_path(info.level, info.slug)} (corrupt branch)")
        return text

    def active(self, level: int) -> list[tuple[str, str]]:
        """(slug, source) of the mechanisms promoted and active at ``level`` on main, in hook order."""
        out = []
        for slug in self.active_names(level):
            text = self._read("main", module_path(level, slug))
            if text is None:
                raise StoreError(f"active/L{level}.toml names {slug!r} but main has no {module_path(level, slug)}")
            out.append((slug, text))
        return out

    def diff(self, a: str, b: str | None = None) -> str:
        """Unified diff of a mechanism against the commit it was derived from (``Base`` trailer), or against
        another mechanism: the same text as ``git -C STORE diff BASE mech/...``."""
        left = self.info(a)
        if b is None:
            base = left.trailers.get("Base")
            if not base:
                raise StoreError(f"{left.branch} has no Base trailer to diff against")
            return self.repo.git.diff(base, left.sha)
        return self.repo.git.diff(left.sha, self.info(b).sha)

    def lineage(self, name: str) -> list[tuple[int, MechanismInfo]]:
        """The tree of Parent links through ``name``: its ancestors first, then every descendant (depth, info)."""
        infos = {m.branch: m for m in self.list()}
        target = infos.get(self.resolve(name))
        assert target is not None
        root = target
        seen = {root.branch}
        while root.parent and root.parent in infos and root.parent not in seen:
            root = infos[root.parent]
            seen.add(root.branch)
        children: dict[str, list[MechanismInfo]] = {}
        for m in infos.values():
            if m.parent:
                children.setdefault(m.parent, []).append(m)
        out: list[tuple[int, MechanismInfo]] = []
        stack = [(0, root)]
        visited: set[str] = set()
        while stack:
            depth, node = stack.pop()
            if node.branch in visited:
                continue
            visited.add(node.branch)
            out.append((depth, node))
            for child in sorted(children.get(node.branch, []), key=lambda m: m.branch, reverse=True):
                stack.append((depth + 1, child))
        return out
