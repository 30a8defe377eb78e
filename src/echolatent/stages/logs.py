"""The rule's log file: where a workflow script sends its logging, warnings and tracebacks.

Library modules log with ``logging.getLogger(__name__)`` and never configure handlers; a
workflow script calls :func:`log_to` first, with ``snakemake.log[0]``, before it imports
anything else, so what those imports print lands in the log file too.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["LOG_FORMAT", "log_to"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_to(path, level: int = logging.INFO):
    """Send this process's logging, warnings and tracebacks to the file ``path``.

    Opens ``path`` for writing (line-buffered, so a running job's log can be followed),
    points ``sys.stderr`` at it (uncaught tracebacks and :mod:`warnings` go there) and
    gives the root logger one handler on it at ``level``, in :data:`LOG_FORMAT`. Meant for
    the process of one rule: it replaces the root logger's handlers.

    Returns
    -------
    file
        The open log file.
    """
    stream = open(path, "w", buffering=1)
    sys.stderr = stream
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    return stream
