"""Fixtures for the agent's tests: the agent recording this very process, and the source
lines the tests point at. Running programs in a child process is tracekit.py's job."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tracekit import ProcessTrace, read_run

from willowisp.agent import api
from willowisp.agent import recorder as _r

_MARK = re.compile(r"#\s*@([\w-]+)")


class InProcess:
    """The agent started in the test's own process; ``stop()`` flushes and reads the trace."""

    def __init__(self, out: str) -> None:
        self.out = out

    def stop(self) -> ProcessTrace:
        api.stop()
        return read_run(self.out)["inproc"]


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[InProcess]:
    """The agent recording this process (all hooks) into a fresh folder."""
    if _r.RECORDER is not None:
        pytest.fail("an agent is already running in the test process")
    out = str(tmp_path / "run")
    api.start(out=out, service="inproc")
    try:
        yield InProcess(out)
    finally:
        api.stop()


def marks_in(text: str) -> dict[str, int]:
    """Line numbers of the ``# @name`` markers in ``text``."""
    found: dict[str, int] = {}
    for n, line in enumerate(text.splitlines(), 1):
        for m in _MARK.finditer(line):
            found[m.group(1)] = n
    return found


@pytest.fixture
def marks(request: pytest.FixtureRequest) -> dict[str, int]:
    """Line numbers of the ``# @name`` markers in the requesting test's file."""
    return marks_in(Path(str(request.path)).read_text())


@pytest.fixture
def marks_of() -> Callable[[str], dict[str, int]]:
    """``marks_of(program)``: the markers' line numbers in a program run by tracekit."""
    return lambda code: marks_in(textwrap.dedent(code))


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real redis-server of the test module's own, stopped after it."""
    import brokers

    broker = brokers.start_redis(str(tmp_path_factory.mktemp("redis")))
    try:
        yield broker.port
    finally:
        brokers.stop(broker)
