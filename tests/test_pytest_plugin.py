"""The pytest plugin: ``pytest --wisp`` fails tests whose trace has a concurrency problem
(keeping their recordings with ``--wisp-keep``); ``wisp_trace`` lets a test ask about its
own recording."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# A sample project's tests: the same read-modify-write of a counter file from two threads,
# once with nothing ordering the threads (a race whatever the interleaving) and once under
# a lock made inside the test.
SAMPLE = """
import threading


def bump(path, lock=None):
    if lock is not None:
        with lock:
            path.write_text(str(int(path.read_text()) + 1))
    else:
        path.write_text(str(int(path.read_text()) + 1))


def run_two(path, lock=None):
    path.write_text("0")
    threads = [threading.Thread(target=bump, args=(path, lock)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_racy_counter(tmp_path):
    run_two(tmp_path / "counter.txt")


def test_fixed_counter(tmp_path):
    run_two(tmp_path / "counter.txt", threading.Lock())
"""

FIXTURE_TEST = """
import threading


def worker(lock):
    with lock:
        pass


def test_questions(wisp_trace):
    lock = threading.Lock()
    with lock:
        pass
    t = threading.Thread(target=worker, args=(lock,), name="helper")
    t.start()
    t.join()
    assert wisp_trace.happens_before("test_fixture.py:12", "test_fixture.py:6")
    assert not wisp_trace.happens_before("test_fixture.py:6", "test_fixture.py:12")
    names = {u["name"] for u in wisp_trace.units("python")}
    assert {"MainThread", "helper"} <= names
    assert wisp_trace.units("go") == []
    assert wisp_trace.findings("deadlock") == []
    assert wisp_trace.hops() == []
    assert wisp_trace.analyze()["schema"] == "willowisp.findings/1"
"""


def pytest_run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=180,
        check=False,
    )


def test_wisp_fails_the_racy_test_and_passes_the_fixed_one(tmp_path: Path) -> None:
    """--wisp: the racy test fails with the race's story, the locked one passes, and only
    the failing test's recording is kept."""
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    keep = tmp_path / "keep"
    r = pytest_run(tmp_path, "--wisp", "--wisp-keep", str(keep), "test_sample.py")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "1 failed, 1 passed" in r.stdout, r.stdout
    assert "FAILED test_sample.py::test_racy_counter" in r.stdout
    assert "WispFindings" in r.stdout and "race" in r.stdout
    assert "counter.txt" in r.stdout  # the story names the data both threads touched
    assert "def pytest_runtest_call" not in r.stdout  # the story, not the plugin's code
    kept = [p.name for p in keep.iterdir()]
    assert len(kept) == 1 and "test_racy_counter" in kept[0], kept
    assert list((keep / kept[0]).glob("*.wtrace"))

    plain = pytest_run(tmp_path, "test_sample.py")  # without --wisp nothing is checked
    assert plain.returncode == 0, plain.stdout


def test_wisp_trace_answers_questions(tmp_path: Path) -> None:
    """wisp_trace: happens_before by source line, units by runtime, findings by kind, hops."""
    (tmp_path / "test_fixture.py").write_text(FIXTURE_TEST)
    r = pytest_run(tmp_path, "test_fixture.py")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed" in r.stdout


# A lock made at import time, the usual way, used by two tests; and one made in conftest.
MODULE_LOCK_TEST = """
import threading

import willowisp
from conftest import shared_lock

balance_lock = threading.Lock()


def deposit(lock):
    with lock:
        willowisp.access("balance", "write")


def run_two(lock):
    threads = [threading.Thread(target=deposit, args=(lock,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_first():
    run_two(balance_lock)


def test_second():
    run_two(balance_lock)


def test_conftest_lock():
    run_two(shared_lock)


def test_asks(wisp_trace):
    run_two(balance_lock)
    assert wisp_trace.findings("race") == []
    assert wisp_trace.happens_before("test_module_lock.py:18", "test_module_lock.py:11")
"""


def test_wisp_records_locks_made_at_import(tmp_path: Path) -> None:
    """--wisp: locks made when the test modules and conftest are imported are recorded in
    every test that uses them, so correctly locked writes are no race."""
    (tmp_path / "conftest.py").write_text("import threading\nshared_lock = threading.Lock()\n")
    (tmp_path / "test_module_lock.py").write_text(MODULE_LOCK_TEST)
    r = pytest_run(tmp_path, "--wisp", "test_module_lock.py")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "4 passed" in r.stdout, r.stdout


NO_EVENT_TEST = """
import threading

import pytest

from willowisp.pytest_plugin import NoSuchEvent

lock = threading.Lock()


def test_unknown_place(wisp_trace):
    with lock:
        pass
    threading.Thread(target=print).start()
    with pytest.raises(NoSuchEvent) as caught:
        wisp_trace.happens_before("test_noevent.py:12", "test_noevent.py:14")
    message = str(caught.value)
    assert message.startswith("no event recorded at test_noevent.py:12: "), message
    assert "test_noevent.py at line(s) 14" in message, message
    assert "pytest --wisp" in message, message
"""


def test_wisp_trace_without_wisp_says_what_it_cannot_see(tmp_path: Path) -> None:
    """Without --wisp, wisp_trace warns about a module-level lock made before recording,
    and happens_before on a place with no event raises a LookupError that says which lines
    were recorded, not a bare KeyError."""
    (tmp_path / "test_noevent.py").write_text(NO_EVENT_TEST)
    r = pytest_run(tmp_path, "-W", "default", "test_noevent.py")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "lock in test_noevent.py is a threading.Lock made before the agent started" in (
        r.stdout
    ), r.stdout


# Three tests whose ids differ only in characters a folder name cannot keep as they are.
LOOKALIKES = """
import threading

import pytest


@pytest.mark.parametrize("name", ["a/b", "a?b", "a b"])
def test_p(name, tmp_path):
    path = tmp_path / "counter.txt"
    path.write_text("0")

    def bump():
        path.write_text(str(int(path.read_text()) + 1))

    threads = [threading.Thread(target=bump) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
"""


def test_wisp_keep_gives_lookalike_test_ids_their_own_folders(tmp_path: Path) -> None:
    """--wisp-keep: test ids that clean to the same name (`[a/b]`, `[a?b]`, `[a b]`) keep
    three folders, each with its own recording."""
    (tmp_path / "test_look.py").write_text(LOOKALIKES)
    keep = tmp_path / "keep"
    r = pytest_run(tmp_path, "--wisp", "--wisp-keep", str(keep), "test_look.py")
    assert "3 failed" in r.stdout, r.stdout + r.stderr
    kept = sorted(p.name for p in keep.iterdir())
    assert len(kept) == 3, kept
    assert all(name.startswith("test_look.py_test_p_a_b_-") for name in kept), kept
    for name in kept:
        assert list((keep / name).glob("*.wtrace")), name
        assert f"kept {keep / name} " in r.stdout
