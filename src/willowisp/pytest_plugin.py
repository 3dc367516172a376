"""pytest plugin (entry point ``pytest11``): ``pytest --wisp [--wisp-keep DIR]`` records the
test session with the Python agent; the ``wisp_trace`` fixture records one test and lets it
analyze what it did.

Nothing is imported or hooked unless ``--wisp`` is given or the fixture is used.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("willowisp", "Willowisp concurrency recording")
    group.addoption(
        "--wisp",
        action="store_true",
        default=False,
        help="record the test session's threads, tasks, locks and hops",
    )
    group.addoption(
        "--wisp-keep",
        metavar="DIR",
        default=None,
        help="keep the recording in DIR (default: a temporary folder)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("wisp", False):
        return
    from willowisp.agent import api

    out = config.getoption("wisp_keep") or tempfile.mkdtemp(prefix="wisp-pytest-")
    config._wisp_out = out  # type: ignore[attr-defined]
    api.start(out=os.path.abspath(out), service="pytest")


def pytest_unconfigure(config: pytest.Config) -> None:
    out = getattr(config, "_wisp_out", None)
    if out is None:
        return
    from willowisp.agent import api

    api.stop()
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line(f"willowisp: session recorded in {out} (willowisp analyze {out})")


class WispTrace:
    """A recording of one test: ``out`` is its run folder."""

    def __init__(self, out: str) -> None:
        self.out = out
        self._stopped = False

    def stop(self) -> None:
        """Flush and stop recording (done automatically at the end of the test)."""
        if not self._stopped:
            from willowisp.agent import api

            api.stop()
            self._stopped = True

    def analyze(self) -> dict[str, Any]:
        """Stop recording and return the analysis as the ``analyze --format json`` document."""
        self.stop()
        from willowisp.analysis.engine import analyze_paths

        return analyze_paths([self.out]).document()


@pytest.fixture
def wisp_trace(tmp_path: Any) -> Iterator[WispTrace]:
    """Record this test with the Python agent into a fresh run folder."""
    from willowisp.agent import api, recorder

    if recorder.RECORDER is not None:
        pytest.skip("the agent already records this process (--wisp); use the session run")
    out = str(tmp_path / "wisp-run")
    api.start(out=out, service="pytest")
    trace = WispTrace(out)
    try:
        yield trace
    finally:
        trace.stop()
