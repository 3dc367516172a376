"""``willowisp`` / ``wisp`` / ``python -m willowisp``: dispatch to one module per command.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed namespace and returning the exit status. Errors
that are the user's (bad usage, bad input) become one line on stderr and status 2; this is
the only place that turns exceptions into exit codes.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from willowisp import __version__
from willowisp.errors import WillowispError

COMMANDS = (
    "run",
    "analyze",
    "demo",
    "doctor",
    "ctl",
    "collect",
    "import",
    "diff",
    "query",
    "export",
    "view",
    "replay",
    "validate",
)

_MODULES = {"import": "import_"}  # a command whose module name is a Python keyword


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="willowisp",
        description="Debug concurrency across runtimes: record threads, tasks and the wire; "
        "find deadlocks, races and false causality.",
    )
    parser.add_argument("--version", action="version", version=f"willowisp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"willowisp.cli.{_MODULES.get(name, name)}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args))
    except WillowispError as exc:
        print(f"willowisp {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
