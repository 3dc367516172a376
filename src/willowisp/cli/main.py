"""``willowisp`` / ``wisp`` / ``python -m willowisp``: dispatch to one module per command.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed namespace and returning the exit status. Errors
that are the user's (bad usage, bad input) become one line on stderr and status 2; this is
the only place that turns exceptions into exit codes. Output cut off by its reader (``|
head``) ends any command quietly with the status a shell gives a program SIGPIPE killed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import select
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
# Commands people reach for by another name: the refusal says where it lives.
_ELSEWHERE = {
    "whatif": "what-if is `willowisp replay PATH --delay TARGET=DURATION`",
    "what-if": "what-if is `willowisp replay PATH --delay TARGET=DURATION`",
    "gate": "the CI gate is `willowisp validate --ci-mode PATH`",
}


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


# What a shell reports for a program killed by SIGPIPE (``yes | head``): 128 + 13.
EXIT_BROKEN_PIPE = 128 + 13


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _dispatch(argv)
    except BrokenPipeError:
        if not _stdout_reader_gone():
            raise  # a socket's broken pipe inside a command: a real error, not `| head`
        # The reader of our output left (``| head``, a closed pager): stop quietly, as
        # other command-line tools do. Point stdout at /dev/null so the interpreter's
        # final flush of what is still buffered does not fail a second time.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE


def _dispatch(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    given = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in given if not a.startswith("-")), None)
    if first in _ELSEWHERE:
        parser.error(f"argument COMMAND: invalid choice: {first!r}: {_ELSEWHERE[first]}")
    args, extra = parser.parse_known_args(argv)
    if extra:
        # Left to the top-level parser, a misspelled option would be refused with the
        # top-level usage; the command's own parser shows the usage that helps.
        _command_parser(parser, args.command).error(f"unrecognized arguments: {' '.join(extra)}")
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


def _command_parser(parser: argparse.ArgumentParser, name: str | None) -> argparse.ArgumentParser:
    """The parser of command ``name`` (the top-level one when no command was given)."""
    for action in parser._actions:  # argparse keeps subparsers nowhere public
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            sub: argparse.ArgumentParser = action.choices[name]
            return sub
    return parser


def _stdout_reader_gone() -> bool:
    """True when stdout is a pipe or socket whose reading end is closed (poll says POLLERR
    or POLLHUP on our writing end), i.e. the BrokenPipeError came from our own output."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False  # replaced by something without a descriptor (tests capture it)
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))


if __name__ == "__main__":
    raise SystemExit(main())
