"""What many tests do the same way: run the ``willowisp`` command as a user would, record a
program until it hangs (the trace itself is the signal), read the analysis JSON.

Imported as ``wispkit`` (``tests/`` is on ``sys.path`` for every test package under it).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from willowisp.demo.watch import wait_until_blocked


def wisp(
    *args: str,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``python -m willowisp ARGS`` in a subprocess, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "willowisp", *args],
        capture_output=True,
        text=True,
        input=stdin,
        env=None if env is None else dict(env),
        timeout=timeout,
        check=False,
    )


def analyze_json(*paths: Path | str, extra: Sequence[str] = ()) -> dict[str, Any]:
    """``willowisp analyze PATHS --format json``, parsed (exit 0 or 1 expected)."""
    done = wisp("analyze", *map(str, paths), "--format", "json", *extra)
    assert done.returncode in (0, 1), done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def record_until_blocked(
    program: Path,
    out: Path,
    resources: Sequence[str],
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    count: int = 1,
    timeout_s: float = 60,
) -> None:
    """``willowisp run`` the program in its own process group and SIGKILL the group once
    the trace shows ``count`` units blocked on each named resource — as a user kills a
    hung system. Nothing of it is left running."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "willowisp", "run", "--out", str(out), "--"]
        + [sys.executable, str(program), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=None if env is None else {**os.environ, **env},
    )
    try:
        for name in resources:
            blocked = wait_until_blocked(str(out), name, count, timeout_s)
            assert blocked, f"nothing blocked on {name} within {timeout_s} s"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


# -- agents: clean environments, the native stream's collector, the control corpus --------

ROOT = Path(__file__).resolve().parents[1]
CORPUS_TOKEN: str = json.loads((ROOT / "conformance" / "protocols" / "index.json").read_text())[
    "token"
]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any ``WILLOWISP_*`` variable (the test's own settings only),
    plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WILLOWISP_")}
    env.update(extra)
    return env


def start_run(
    out: Path,
    *argv: str,
    env: Mapping[str, str] | None = None,
    stdin: bool = False,
) -> subprocess.Popen[str]:
    """``willowisp run --out OUT -- ARGV`` left running (a server the test talks to), its
    stdout piped as text (and its stdin, when asked)."""
    return subprocess.Popen(
        [sys.executable, "-m", "willowisp", "run", "--out", str(out), "--", *argv],
        env=None if env is None else dict(env),
        stdin=subprocess.PIPE if stdin else None,
        stdout=subprocess.PIPE,
        text=True,
    )


def start_collector(folder: Path, port: int = 0) -> tuple[subprocess.Popen[str], str]:
    """``willowisp collect --native PORT --out FOLDER``; the process and its address."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "willowisp", "collect", "--native", str(port), "--out", str(folder)],
        env=clean_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    address = line.split(" on ", 1)[1].split(",", 1)[0].strip()
    return proc, address


def stop_collector(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.wait(timeout=30)
    if proc.stdout is not None:
        proc.stdout.close()


def check_control_corpus(desc_path: Path, runtime: str) -> dict[str, Any]:
    """A running agent's control channel (started with ``WILLOWISP_CONTROL=tcp`` and
    ``WILLOWISP_CONTROL_TOKEN=CORPUS_TOKEN``) answers every control item of
    conformance/protocols as the corpus says, over its Unix socket and over TCP, and still
    answers after each; its descriptor and socket are private. Returns the descriptor."""
    sys.path.insert(0, str(ROOT / "tests" / "protocols"))
    import protoharness as ph  # type: ignore[import-not-found]

    desc: dict[str, Any] = json.loads(desc_path.read_text())
    assert desc["runtime"] == runtime and desc["token"] == CORPUS_TOKEN
    assert desc_path.stat().st_mode & 0o777 == 0o600
    assert Path(desc["socket"]).stat().st_mode & 0o777 == 0o600
    assert desc["tcp"].startswith("127.0.0.1:")
    for address in (f"unix:{desc['socket']}", desc["tcp"]):
        connect = ph.connector(address)
        for item in ph.items("control"):
            received = ph.exchange(connect, (ph.CORPUS / item["file"]).read_bytes())
            ph.check_control_item(item, received)
            ph.control_alive(connect)
    return desc


UNSHARE = shutil.which("unshare")
CAN_MOUNT = os.geteuid() == 0 and UNSHARE is not None and shutil.which("mount") is not None


def run_on_full_disk(
    tmp_path: Path, argv: Sequence[str], size: str, timeout: float = 300, **env: str
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """``willowisp run`` ARGV with its run folder on a real SIZE tmpfs (a mount namespace
    of its own: ``unshare -m``, as root), so writes past SIZE fail with ENOSPC as on a full
    disk; what the folder held when the program ended is copied out (the tmpfs dies with
    the namespace). Returns the finished run and that copy."""
    disk, kept = tmp_path / "disk", tmp_path / "kept"
    disk.mkdir()
    kept.mkdir()
    run = shlex.join([sys.executable, "-m", "willowisp", "run", "--out", str(disk), "--", *argv])
    script = (
        f"mount -t tmpfs -o size={size} willowisp-full {shlex.quote(str(disk))} || exit 97; "
        f"{run}; rc=$?; cp -a {shlex.quote(str(disk))}/. {shlex.quote(str(kept))}/; exit $rc"
    )
    done = subprocess.run(
        [str(UNSHARE), "-m", "sh", "-c", script],
        capture_output=True,
        text=True,
        env=clean_env(**env),
        timeout=timeout,
        check=False,
    )
    assert done.returncode != 97, done.stderr
    return done, kept


def check_loss_reported(kept: Path, service: str) -> dict[str, Any]:
    """The trace left on a full disk: whole chunks only (no torn tail), the reserve
    removed, and the loss in it: the process's dropped count, a fault, and the
    ``buffer-drop`` and ``agent-fault`` findings. Returns the process's ``agent``."""
    files = sorted(kept.glob("*.wtrace"))
    assert files, list(kept.iterdir())
    assert not list(kept.glob(".willowisp-reserve-*")), "the reserve is removed at exit"
    doc = analyze_json(kept)
    notes = " ".join(doc["trace"].get("notes", []))
    assert "writer killed" not in notes and not doc["trace"]["unreadable_files"], notes
    (proc,) = [p for p in doc["processes"] if p["service"] == service]
    agent = proc["agent"]
    assert agent["dropped"] > 0 and agent["faults"] >= 1, agent
    kinds = {f["kind"] for f in doc["findings"]}
    assert {"buffer-drop", "agent-fault"} <= kinds, kinds
    return agent


# tgkill(2)'s number: a signal to one thread of another process
SYS_TGKILL = {"x86_64": 234, "aarch64": 131}


def tgkill(pid: int, tid: int, sig: int) -> None:
    """Send ``sig`` to thread ``tid`` of process ``pid`` (the kernel's choice of thread for
    a process-wide signal, made on purpose)."""
    import ctypes
    import platform

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(SYS_TGKILL[platform.machine()], pid, tid, sig) != 0:
        raise OSError(ctypes.get_errno(), "tgkill")


class AbsentCollector:
    """A collector that is not there yet, counted: a TCP listener on 127.0.0.1 (port 0)
    that accepts every connection and closes it at once, so an agent's hello fails like a
    refused connect, and the test sees each attempt. ``wait_attempts(n)`` waits on that
    signal; ``close()`` frees the port for a real collector (``start_collector(folder,
    port)``: it binds with SO_REUSEADDR)."""

    def __init__(self) -> None:
        import socket
        import threading

        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.attempts = 0
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            conn.close()
            with self._changed:
                self.attempts += 1
                self._changed.notify_all()

    def wait_attempts(self, n: int, timeout: float = 60.0) -> int:
        """Wait until the agent has tried ``n`` times; the count (fewer on timeout)."""
        with self._changed:
            self._changed.wait_for(lambda: self.attempts >= n, timeout)
            return self.attempts

    def close(self) -> None:
        import contextlib
        import socket

        with contextlib.suppress(OSError):  # wakes the blocked accept (close alone does not)
            self._sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=10)
        self._sock.close()


def collected_events(folder: Path) -> int:
    """The events in a folder's segments so far (a file being written may end inside a
    chunk: its complete chunks count)."""
    from willowisp.errors import TraceFormatError
    from willowisp.wtrace.reader import read_file

    total = 0
    for path in folder.glob("*.wtrace"):
        try:
            total += read_file(path).events
        except (OSError, TraceFormatError):
            pass
    return total


def faults_in(folder: Path) -> list[str]:
    """The messages of the agent fault records in a folder's segments."""
    from willowisp.wtrace.reader import read_file

    return [
        str(r.get("message"))
        for path in folder.glob("*.wtrace")
        for c in read_file(path).chunks
        for r in c.records
        if r.rtype == 5
    ]
