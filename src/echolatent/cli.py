"""The ``echolatent`` command line: one subcommand per stage that makes sense outside the workflow.

Each subcommand lives in :mod:`echolatent.commands` and registers itself with
``register(subparsers)``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from echolatent import __version__
from echolatent.io.errors import InputError

#: Subcommand modules, in the order ``echolatent --help`` lists them.
COMMANDS = ("simulate", "ingest", "anatomy")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="echolatent", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"echolatent {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"echolatent.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"echolatent.commands.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # the stages log their progress; on the command line it goes to the terminal
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except InputError as err:
        print(f"echolatent {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
