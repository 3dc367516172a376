"""pytest plugin (entry point ``pytest11``): concurrency checks for a test suite.

- ``pytest --wisp`` records each test's call with the Python agent (started in-process,
  ``willowisp.start()``), analyzes it when the test ends, and fails a test that passed if
  its trace has a deadlock, a race, a potential deadlock or dropped context, with each
  finding's story as the failure. ``--wisp-keep DIR`` keeps the run folder of every failing
  test in ``DIR/<test id>/`` (the others are deleted), for ``willowisp analyze`` or
  ``view``. The folder name is the test id with every run of characters other than
  letters, digits, ``_``, ``.`` and ``-`` made one ``_``, cut to 150; when that changed the
  id, 10 hex digits of its SHA-256 end the name (``-1a2b3c4d5e``), so ``test_p[a/b]`` and
  ``test_p[a?b]`` keep two folders.
- The ``wisp_trace`` fixture records one test and gives it the analysis to assert on:
  ``findings(kind)``, ``units(runtime)``, ``hops()``, ``happens_before(a, b)``.

What is recorded is the test's *call* phase (with ``wisp_trace``: from its setup). With
``--wisp`` the agent's primitive hooks go in before the test modules (and conftest files)
are imported, so a module-level ``lock = threading.Lock()`` or a lock a fixture makes is
recorded in every test that uses it (``agent.api.arm``). Without ``--wisp``, the fixture
alone starts the agent in setup: locks made earlier (at import) are not seen, and the run
says so with an agent fault naming each one (and a pytest warning).
Nothing is imported or hooked unless ``--wisp`` is given or the fixture is used.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import tempfile
import warnings
from collections.abc import Generator, Iterator
from typing import Any

import pytest

# The finding kinds that fail a test under --wisp: what makes concurrent code wrong, as
# opposed to slow (contention) or worth a look (clock skew in a one-process test is noise).
FAILING_KINDS = ("deadlock", "race", "potential-deadlock", "dropped-context")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
MAX_NAME = 150  # a folder name's length, well under the usual 255-byte file name limit


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("willowisp", "Willowisp concurrency recording")
    group.addoption(
        "--wisp",
        action="store_true",
        default=False,
        help="record each test; fail it on a deadlock, race, potential deadlock or dropped "
        "context in its trace",
    )
    group.addoption(
        "--wisp-keep",
        metavar="DIR",
        default=None,
        help="keep the recordings of failing tests in DIR/<test id>/",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    # The earliest point the options are known: before conftest files and test modules
    # are imported, so the locks they make at import time are the recorded kind.
    if getattr(early_config.known_args_namespace, "wisp", False):
        from willowisp.agent import api

        api.arm()


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("wisp", False):
        from willowisp.agent import api

        api.arm()  # already done, unless the plugin was loaded late (-p)
        config.pluginmanager.register(_PerTest(config), "willowisp-per-test")


class _PerTest:
    """--wisp: one recording per test call, analyzed at its end."""

    def __init__(self, config: pytest.Config) -> None:
        self.keep = config.getoption("wisp_keep")
        # Invariant: every test's run folder is created under root and removed or moved
        # into keep before the next test starts.
        self.root = tempfile.mkdtemp(prefix="wisp-pytest-")
        self.kept: list[str] = []

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        __tracebackhide__ = True  # a failure shows the findings' story, not this hook's code
        from willowisp.agent import api, recorder

        if recorder.RECORDER is not None:  # wisp_trace (or the program) already records
            return (yield)
        out = os.path.join(self.root, folder_name(item.nodeid))
        api.start(out=out, service="pytest")
        failed = True
        try:
            result = yield
            failed = False
        finally:
            api.stop()
            if failed:
                self._done(out, item, failed=True)
        story = _failing_story(out)
        self._done(out, item, failed=bool(story))
        if story:
            raise WispFindings(story)
        return result

    def _done(self, out: str, item: pytest.Item, *, failed: bool) -> None:
        if failed and self.keep and os.path.isdir(out):
            dest = os.path.join(self.keep, folder_name(item.nodeid))
            shutil.rmtree(dest, ignore_errors=True)
            os.makedirs(self.keep, exist_ok=True)
            shutil.move(out, dest)
            self.kept.append(dest)
        else:
            shutil.rmtree(out, ignore_errors=True)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        for dest in self.kept:  # quoted: the command is meant to be pasted into a shell
            arg = shlex.quote(dest)
            terminalreporter.write_line(f"willowisp: kept {arg} (willowisp analyze {arg})")

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        from willowisp.agent import api

        api.disarm()
        shutil.rmtree(self.root, ignore_errors=True)


def folder_name(nodeid: str) -> str:
    """A file-system-safe folder name for a test id, one per id: the id itself when it is
    safe and short, else its cleaned and cut form plus a hash of the whole id (cleaning and
    cutting alone map ``test_p[a/b]``, ``test_p[a?b]`` and ``test_p[a b]`` to one name)."""
    clean = _SAFE.sub("_", nodeid)
    if clean == nodeid and len(clean) <= MAX_NAME:
        return clean
    digest = hashlib.sha256(nodeid.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{clean[: MAX_NAME - len(digest) - 1]}-{digest}"


class WispFindings(AssertionError):
    """A test's trace has findings of a failing kind; the message tells their stories."""


class NoSuchEvent(LookupError):
    """``happens_before`` was given a place or an event id nothing was recorded at."""

    def __str__(self) -> str:  # the message as written, not a KeyError's repr of it
        return str(self.args[0]) if self.args else ""


def _failing_story(out: str) -> str:
    from willowisp.analysis.engine import analyze_paths

    if not os.path.isdir(out):
        return ""
    doc = analyze_paths([out]).document()
    bad = [f for f in doc["findings"] if f["kind"] in FAILING_KINDS]
    if not bad:
        return ""
    lines = [f"willowisp found {len(bad)} concurrency problem(s) in this test's trace:"]
    for f in bad:
        lines.append(f"{f['severity'].upper()} {f['kind']} {f['id']}: {f['summary']}")
        lines += [f"    {i}. {step}" for i, step in enumerate(f["explanation"], 1)]
    return "\n".join(lines)


class WispTrace:
    """A recording of one test (``out`` is its run folder) and questions about it.

    Every question stops the recording first (once) and analyzes what was recorded; later
    questions reuse that analysis.
    """

    def __init__(self, out: str, *, armed: bool = True) -> None:
        self.out = out
        self.armed = armed  # were the hooks in place before the test modules were imported?
        self._stopped = False
        self._analysis: Any = None

    def stop(self) -> None:
        """Flush and stop recording (done automatically at the end of the test)."""
        if not self._stopped:
            from willowisp.agent import api

            api.stop()
            self._stopped = True

    def _analyzed(self) -> Any:
        if self._analysis is None:
            self.stop()
            from willowisp.analysis.engine import analyze_paths

            self._analysis = analyze_paths([self.out])
        return self._analysis

    def analyze(self) -> dict[str, Any]:
        """The analysis as the ``analyze --format json`` document."""
        doc: dict[str, Any] = self._analyzed().document()
        return doc

    def findings(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The findings (as in the JSON document), only those of ``kind`` if given."""
        return [f for f in self.analyze()["findings"] if kind is None or f["kind"] == kind]

    def units(self, runtime: str | None = None) -> list[dict[str, Any]]:
        """Execution units: ``id``, ``kind``, ``name``, ``service``, ``runtime``."""
        a = self._analyzed()
        trace = a.trace
        out = []
        for u in trace.units:
            p = trace.processes[u.proc]
            if runtime is None or p.runtime == runtime:
                out.append(
                    {
                        "id": u.id(p),
                        "kind": u.kind,
                        "name": u.name,
                        "service": p.service,
                        "runtime": p.runtime,
                    }
                )
        return out

    def hops(self) -> list[dict[str, Any]]:
        """Cross-process hops, grouped as in the JSON document's ``hops``."""
        hops: list[dict[str, Any]] = self.analyze()["hops"]
        return hops

    def happens_before(self, a: str, b: str) -> bool:
        """Does ``a`` happen before ``b`` (program order plus the happens-before graph)?

        Each is an event id (``<process id>:<n>``, as findings list them) or a source place
        ``file.py:LINE`` meaning the first event recorded at that line. Raises
        :class:`NoSuchEvent` (a ``LookupError``) naming the lines that were recorded in that
        file if nothing was recorded there.
        """
        from willowisp.causality.reach import ReachIndex

        analysis = self._analyzed()
        ea, eb = self._event(a), self._event(b)
        index = ReachIndex.build(analysis.causality, [ea, eb])
        return bool(index.happens_before(ea, eb))

    def _event(self, what: str) -> int:
        trace = self._analyzed().trace
        found: dict[str, int] = trace.event_indices([what])
        if what in found:
            return found[what]
        places = [loc.index for loc in trace.locations if loc.where() == what]
        if places:
            import numpy as np

            rows = np.flatnonzero(np.isin(trace.events.loc, places))
            if len(rows):
                return int(rows[0])
        raise NoSuchEvent(self._no_event(what))

    def _no_event(self, what: str) -> str:
        """Why ``what`` names no event, and what would."""
        trace = self._analyzed().trace
        file, _, line = what.rpartition(":")
        if not file or not line.isdigit():
            return (
                f"no event {what!r} in this test's trace: give an event id "
                "(<process id>:<n>, as findings list them) or a place file.py:LINE"
            )
        used = set(trace.events.loc.tolist())
        lines = sorted(
            {
                loc.line
                for loc in trace.locations
                if loc.index in used and loc.where().rpartition(":")[0] == file
            }
        )
        seen = (
            f"events were recorded in {file} at line(s) {', '.join(map(str, lines))}"
            if lines
            else f"no event was recorded in {file}"
        )
        hint = ""
        if not self.armed:
            hint = (
                "; a lock made before recording started (at import) is not recorded "
                "without pytest --wisp"
            )
        return f"no event recorded at {what}: {seen}{hint}"


@pytest.fixture
def wisp_trace(tmp_path: Any) -> Iterator[WispTrace]:
    """Record this test with the Python agent into a fresh run folder."""
    from willowisp.agent import api, recorder

    if recorder.RECORDER is not None:
        pytest.skip("the agent already records this process; wisp_trace needs its own")
    out = str(tmp_path / "wisp-run")
    rec = api.start(out=out, service="pytest")
    trace = WispTrace(out, armed=api.armed())
    for message in getattr(rec, "unseen_locks", ()):
        warnings.warn(pytest.PytestWarning(f"willowisp: {message}"), stacklevel=1)
    try:
        yield trace
    finally:
        trace.stop()
