"""The rule's log file: where a workflow script sends its logging, warnings and tracebacks.

Library modules log with ``logging.getLogger(__name__)`` and never configure handlers; a
workflow script calls :func:`log_to` first, with ``snakemake.log[0]`` and
``snakemake.resources.attempt`` (the workflow gives every rule that resource: Snakemake's
script object does not carry the attempt), before it imports anything else, so what those imports print lands in
the log file too.

Every attempt of a job is kept. Snakemake deletes a job's log before it runs the job again
(a retry after a failure, an out-of-memory kill or a cancelled cluster job), so each attempt
is also written to ``{log folder}/.attempts/{log name}``; attempt 2 and later start the log
with the attempts before them, each under an ``=== attempt N ===`` header. A job that is sent
SIGTERM (``scancel``, a cluster time limit, pre-emption, Ctrl-C of a local run) logs it and
exits with status 143 through the normal unwinding, so files being written under temporary
names are removed and the scheduler sees a failed job, which Snakemake retries.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

__all__ = ["LOG_FORMAT", "log_to", "attempts_file"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

logger = logging.getLogger(__name__)


class _Tee:
    """A text stream writing to several (line-buffered) files."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self):
        for stream in self.streams:
            stream.flush()

    def isatty(self):
        return False

    def fileno(self):
        return self.streams[0].fileno()


def attempts_file(path) -> Path:
    """Where every attempt of the job logging to ``path`` is kept: ``{folder}/.attempts/{name}``."""
    path = Path(path)
    return path.parent / ".attempts" / path.name


def log_to(path, level: int = logging.INFO, *, attempt: int | None = None):
    """Send this process's logging, warnings and tracebacks to the file ``path``.

    Opens ``path`` for writing (line-buffered, so a running job's log can be followed),
    points ``sys.stderr`` at it (uncaught tracebacks and :mod:`warnings` go there) and
    gives the root logger one handler on it at ``level``, in :data:`LOG_FORMAT`. Meant for
    the process of one rule: it replaces the root logger's handlers, and turns SIGTERM into
    a logged exit with status 143.

    With ``attempt`` (Snakemake's, from 1), the attempts before this one are copied into the
    log first and this one is also appended to :func:`attempts_file` (started afresh on
    attempt 1), under a header naming the attempt, the host and the time.

    Returns
    -------
    file
        The open log file.
    """
    path = Path(path)
    stream = open(path, "w", buffering=1)
    target = stream
    if attempt is not None:
        history = attempts_file(path)
        history.parent.mkdir(parents=True, exist_ok=True)
        if int(attempt) > 1 and history.is_file():
            stream.write(history.read_text())
        kept = open(history, "w" if int(attempt) <= 1 else "a", buffering=1)
        target = _Tee(stream, kept)
        target.write(f"=== attempt {int(attempt)} on {socket.gethostname()} at "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')} (pid {os.getpid()}) ===\n")
    sys.stderr = target
    handler = logging.StreamHandler(target)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    signal.signal(signal.SIGTERM, _terminated)
    return stream


def _terminated(signum, frame):
    # SystemExit unwinds the stack: the temp-then-rename writers (echolatent.io.atomic) remove their
    # temporary files, and the non-zero status marks the job failed, to be retried
    logger.error("received SIGTERM (job cancelled, out of time or pre-empted): stopping; the job can be "
                 "re-run and resumes from its last checkpoint where it has one")
    raise SystemExit(143)
