"""`willowisp view` bounds what connections without the token can cost it: at most 64 are
served at once (the rest get a 503 at once), and a silent one is closed after the idle
timeout (WILLOWISP_VIEW_IDLE_S), after which real requests are served again."""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from tests.view.test_view import get, token_of

from willowisp.view.server import MAX_HANDLERS

IDLE_S = 3.0
PROGRAM = """
import threading
lock = threading.Lock()
def work():
    with lock:
        pass
threads = [threading.Thread(target=work) for _ in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""


@pytest.fixture
def viewer(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A small real run shown by `willowisp view` in its own process, idle timeout 3 s."""
    script = tmp_path / "prog.py"
    script.write_text(PROGRAM)
    run = tmp_path / "run"
    subprocess.run(
        [sys.executable, "-m", "willowisp", "run", "--out", str(run), "--", sys.executable,
         str(script)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "willowisp", "view", str(run), "--no-cache"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "WILLOWISP_VIEW_IDLE_S": str(IDLE_S)},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+/\?token=\S+", line)
        assert match, line + (proc.stderr.read() if proc.stderr else "")
        yield proc, match.group(0)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]


def _port(url: str) -> int:
    return int(urlsplit(url).port or 0)


def test_idle_connections_are_capped_and_timed_out(viewer) -> None:
    """120 idle connections: the 56 over the cap get a 503 at once, the process stays under
    the cap's threads plus a few, the others are closed after ~3 s, then a request works."""
    proc, url = viewer
    before = _threads(proc.pid)
    opened = time.monotonic()
    idle = [socket.create_connection(("127.0.0.1", _port(url)), timeout=10) for _ in range(120)]
    answers: dict[socket.socket, tuple[float, bytes]] = {}
    try:
        deadline = time.monotonic() + 20
        while len(answers) < len(idle) and time.monotonic() < deadline:
            waiting = [s for s in idle if s not in answers]
            ready, _, _ = select.select(waiting, [], [], 0.2)
            for s in ready:
                answers[s] = (time.monotonic() - opened, s.recv(4096))
            if len(answers) >= len(idle) - MAX_HANDLERS:  # every one over the cap answered
                assert _threads(proc.pid) <= before + MAX_HANDLERS + 4
        refused = [data for _, data in answers.values() if data.startswith(b"HTTP/1.1 503 ")]
        seen = sorted((round(when, 1), data[:40]) for when, data in answers.values())
        assert len(refused) == len(idle) - MAX_HANDLERS, seen
        assert all(b"X-Content-Type-Options: nosniff" in data for data in refused)
        closed = [when for when, data in answers.values() if data == b""]
        assert len(closed) == MAX_HANDLERS, f"{len(answers)} of {len(idle)} answered in 20 s"
        assert all(IDLE_S - 0.5 <= when <= IDLE_S + 5 for when in closed), sorted(closed)
    finally:
        for s in idle:
            s.close()
    status, body, _ = get(url, f"/api/meta?token={token_of(url)}")
    assert status == 200 and b'"lanes"' in body
