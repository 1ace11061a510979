"""An earlier revision of Peregrine to run beside this checkout: ``run.py --baseline REV``.

Strategy: :func:`create` resolves ``REV`` to a commit and checks it out with ``git worktree add
--detach`` into a directory of the run's workdir (outside the repository); the server
``peregrine-baseline`` then runs the ``peregrine`` server's command with ``PYTHONPATH`` on that
worktree's ``packages/*/src`` (:attr:`Baseline.src_dirs`, :func:`servers.server_environ`).
:func:`remove` deletes the worktree and its registration in the repository.

Invariants:
- The worktree is never inside the repository, and only the worktree this run made is removed
  (``git worktree remove --force PATH``; never ``git worktree prune``, which would touch other
  worktrees' records).
- The apps (``tools.bench.apps``) come from this checkout for both servers, so the two run the
  same handler; only the packages differ.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

GIT_TIMEOUT_S: Final = 120.0
WORKTREE_DIR: Final = "baseline-worktree"
"""The worktree's name inside the run's workdir."""


class BaselineError(Exception):
    """The revision cannot be resolved or checked out."""


@dataclass(frozen=True)
class Baseline:
    """A checked-out earlier revision.

    Attributes:
        rev: the revision as given on the command line (``c253d84``).
        commit: the full commit it resolves to.
        subject: that commit's subject line.
        root: the worktree's directory.
    """

    rev: str
    commit: str
    subject: str
    root: Path

    @property
    def short(self) -> str:
        """The commit abbreviated to 7 digits, as the report shows it."""
        return self.commit[:7]

    @property
    def src_dirs(self) -> list[Path]:
        """The worktree's ``packages/*/src`` directories, in name order."""
        return src_dirs(self.root)


def src_dirs(root: Path) -> list[Path]:
    """``packages/*/src`` under ``root``, sorted (what goes on a baseline's ``PYTHONPATH``)."""
    return sorted(p for p in (root / "packages").glob("*/src") if p.is_dir())


def resolve_command(repo: Path, rev: str) -> list[str]:
    """The git command printing the full commit ``rev`` names (failing if it names none)."""
    return ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"]


def add_command(repo: Path, commit: str, path: Path) -> list[str]:
    """The git command checking ``commit`` out, detached, as a worktree at ``path``."""
    return ["git", "-C", str(repo), "worktree", "add", "--detach", "--quiet", str(path), commit]


def remove_command(repo: Path, path: Path) -> list[str]:
    """The git command deleting the worktree at ``path`` (untracked files and all) and its
    record in the repository; it also works when the directory is already gone."""
    return ["git", "-C", str(repo), "worktree", "remove", "--force", str(path)]


def worktree_path(workdir: Path) -> Path:
    """Where :func:`create` puts the worktree (so a cleanup knows it before it exists)."""
    return workdir / WORKTREE_DIR


def _git(command: Sequence[str], *, strip: bool = True) -> str:
    try:
        done = subprocess.run(
            list(command), capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BaselineError(f"`{' '.join(command)}` failed: {exc}") from exc
    if done.returncode != 0:
        tail = " ".join(done.stderr.strip().splitlines()[-2:]) or f"status {done.returncode}"
        raise BaselineError(f"`{' '.join(command)}` failed: {tail}")
    return done.stdout.strip() if strip else done.stdout


def create(repo: Path, rev: str, workdir: Path) -> Baseline:
    """Check ``rev`` out into :func:`worktree_path` of ``workdir``.

    Raises:
        BaselineError: ``rev`` names no commit, or git failed; nothing is left behind then
            except what :func:`remove` deletes.
    """
    try:
        commit = _git(resolve_command(repo, rev))
    except BaselineError:
        raise BaselineError(f"`{rev}` is not a commit of {repo}") from None
    subject = _git(["git", "-C", str(repo), "log", "-1", "--format=%s", commit])
    path = worktree_path(workdir)
    _git(add_command(repo, commit, path))
    baseline = Baseline(rev, commit, subject, path)
    if not baseline.src_dirs:
        raise BaselineError(f"{rev} ({commit[:7]}) has no packages/*/src")
    return baseline


def remove(repo: Path, path: Path) -> str | None:
    """Delete the worktree at ``path``; ``None`` when done, else what went wrong (the
    directory is deleted anyway; the repository's record may then be left)."""
    problem = None
    try:
        _git(remove_command(repo, path))
    except BaselineError as exc:
        problem = str(exc)
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
    return problem


def source_digest(dirs: Sequence[Path]) -> str:
    """A digest of every file under ``dirs`` (names and bytes; ``__pycache__`` left out), to
    tell whether the code a server runs changed between two moments."""
    digest = hashlib.sha256()
    for root in dirs:
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(f"{path.relative_to(root)}\0".encode())
                try:
                    digest.update(path.read_bytes())
                except OSError:
                    digest.update(b"unreadable")
    return digest.hexdigest()


def changed_spans(digests: Sequence[str]) -> list[tuple[int, int]]:
    """The 1-based (first, last) indices of each stretch of equal consecutive ``digests``."""
    spans: list[tuple[int, int]] = []
    for index, digest in enumerate(digests, 1):
        if spans and digests[spans[-1][1] - 1] == digest:
            spans[-1] = (spans[-1][0], index)
        else:
            spans.append((index, index))
    return spans


def registered(repo: Path, path: Path) -> bool:
    """Whether the repository lists a worktree at ``path`` (``git worktree list``)."""
    try:
        listing = _git(["git", "-C", str(repo), "worktree", "list", "--porcelain"])
    except BaselineError:
        return False
    return f"worktree {path}" in listing.splitlines()


def commit_of(repo: Path, *, ignore: str = "") -> tuple[str, str, list[str]] | None:
    """This checkout's ``HEAD`` (short commit, subject) and the directories (two levels deep)
    whose files differ from it, files under ``ignore`` left out, for the report's header;
    ``None`` without git."""
    try:
        head = _git(["git", "-C", str(repo), "log", "-1", "--format=%h %s"])
        status = _git(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=all"],
            strip=False,
        )
    except BaselineError:
        return None
    paths = [line[3:].split(" -> ")[-1].strip('"') for line in status.splitlines() if len(line) > 3]
    changed = sorted(
        {"/".join(p.split("/")[:2]) for p in paths if not (ignore and p.startswith(ignore))}
    )
    short, _, subject = head.partition(" ")
    return short, subject, changed
