"""Reading a YAML configuration file with errors that name the file, the line and the column."""

from __future__ import annotations

from pathlib import Path

import yaml

from echolatent.io.errors import InputError


def read_yaml(path) -> dict:
    """Parse a YAML mapping.

    Raises
    ------
    InputError
        Naming the file and, for a syntax error, the 1-based line and column where the parser
        stopped (Snakemake's own message names neither), or saying that the top level is not
        a mapping of keys.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = str(err.problem or "")
        if err.context and err.context_mark is not None:
            problem += f" ({err.context} started at line {err.context_mark.line + 1})"
        raise InputError(path, f"YAML syntax error at {where}{problem}") from None
    except yaml.YAMLError as err:
        raise InputError(path, f"YAML syntax error: {err}") from None
    except UnicodeDecodeError as err:
        raise InputError(path, f"not a text file ({err.reason} at byte {err.start})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(path, f"the top level must be a mapping of keys, got {type(data).__name__}")
    return data
