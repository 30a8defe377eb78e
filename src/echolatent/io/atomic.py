"""Atomic file writes: write under a temporary name beside the target, then rename.

A reader never sees a half-written file: the content goes to ``.tmp-<pid>-<name>`` in the
target's folder and :func:`os.replace` (atomic within one file system) puts it in place; on
error the temporary file is removed and the target is left as it was. The pid in the name
lets :func:`remove_stale_temporaries` clear the leftovers of a writer that was killed before
it could clean up, without touching those of a writer still running.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path
from typing import Iterable, Iterator

__all__ = ["atomic_directory", "atomic_path", "atomic_paths", "remove_stale_temporaries", "temporary_path"]


def temporary_path(path) -> Path:
    """The temporary name ``path`` is written under before the rename: ``.tmp-<pid>-<name>`` beside it."""
    path = Path(path)
    return path.with_name(f".tmp-{os.getpid()}-{path.name}")


@contextlib.contextmanager
def atomic_paths(paths: Iterable) -> Iterator[dict[Path, Path]]:
    """Write several files all or nothing: the temporary paths to write, renamed together at the end.

    Parameters
    ----------
    paths : iterable of path-like
        The targets. Their folders must exist.

    Yields
    ------
    dict
        Target (:class:`~pathlib.Path`) -> the temporary path to write it under.

    Notes
    -----
    When the ``with`` block ends normally every temporary file is renamed onto its target, in
    the order of ``paths``; when it raises, no target is touched. In both cases no temporary
    file is left behind (a target whose temporary file was never written raises
    :class:`FileNotFoundError` on success).
    """
    temporaries = {Path(path): temporary_path(path) for path in paths}
    try:
        yield temporaries
        for target, temporary in temporaries.items():
            os.replace(temporary, target)
    finally:
        for temporary in temporaries.values():
            if temporary.exists():
                temporary.unlink()


@contextlib.contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Write one file atomically: the temporary path to write, renamed onto ``path`` at the end.

    Examples
    --------
    >>> with atomic_path("table.tsv") as tmp:
    ...     table.to_csv(tmp, sep="\\t", index=False)
    """
    with atomic_paths([path]) as temporaries:
        yield temporaries[Path(path)]


@contextlib.contextmanager
def atomic_directory(path) -> Iterator[Path]:
    """Write a folder all or nothing: a temporary folder to fill, renamed onto ``path`` at the end.

    An existing ``path`` is replaced only once the new folder is complete; on error the
    temporary folder is removed and ``path`` is left as it was.
    """
    path = Path(path)
    temporary = temporary_path(path)
    if temporary.exists():
        shutil.rmtree(temporary)
    temporary.mkdir(parents=True)
    try:
        yield temporary
        if path.exists():
            old = path.with_name(f".old-{os.getpid()}-{path.name}")
            os.replace(path, old)
            os.replace(temporary, path)
            shutil.rmtree(old)
        else:
            os.replace(temporary, path)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary)


def _running(pid: int) -> bool:
    """Whether another live process has this pid (this very process does not count)."""
    if pid == os.getpid():
        return False  # an earlier attempt of this very process, which is about to rewrite the name
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except (OverflowError, ValueError):
        return False
    return True


def remove_stale_temporaries(path) -> None:
    """Remove the ``.tmp-<pid>-<name>`` leftovers of ``path`` whose writer is gone (e.g. SIGKILLed).

    Only leftovers of this very output name are touched, and only when no running process
    has the pid in their name, so a job writing another output is never disturbed. A
    leftover folder (a build folder named by :func:`temporary_path`) is removed with its content.
    """
    path = Path(path)
    pattern = re.compile(rf"\.tmp-(\d+)-{re.escape(path.name)}")
    if not path.parent.is_dir():
        return
    for candidate in path.parent.iterdir():
        match = pattern.fullmatch(candidate.name)
        if match and not _running(int(match.group(1))):
            if candidate.is_dir() and not candidate.is_symlink():
                shutil.rmtree(candidate, ignore_errors=True)
            else:
                candidate.unlink(missing_ok=True)
