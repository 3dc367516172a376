"""`willowisp ctl` against real programs running under `willowisp run`: status, enable and
disable without a restart, by pid and by run folder, and its errors."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PROGRAM = """
import os, sys, threading
lock = threading.Lock()
def work():
    with lock:
        pass
work()
r, w = os.pipe()
child = 0
print(os.getpid(), flush=True)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "work":
        work()
        print("done", flush=True)
    elif cmd == "fork":
        child = os.fork()
        if child == 0:  # the child waits until the parent closes the pipe
            os.close(w)
            print(os.getpid(), flush=True)
            os.read(r, 1)
            os._exit(0)
    elif cmd == "quit":
        break
os.close(w)
if child:
    os.waitpid(child, 0)
"""


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """An environment with its own runtime folder (short: socket paths are limited)."""
    folder = tempfile.mkdtemp(prefix="wisp-ctl-", dir="/tmp")
    os.chmod(folder, 0o700)
    try:
        yield {**os.environ, "WILLOWISP_RUNTIME_DIR": folder}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class Program:
    """PROGRAM under `willowisp run`, driven line by line through its stdin."""

    def __init__(self, tmp_path: Path, env: dict[str, str], *run_args: str) -> None:
        script = tmp_path / "prog.py"
        script.write_text(PROGRAM)
        self.out = tmp_path / "run"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "willowisp", "run", "--out", str(self.out), *run_args,
             "--", sys.executable, str(script)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env,
        )  # fmt: skip
        self.pid = int(self.line())

    def line(self) -> str:
        assert self.proc.stdout is not None
        text = self.proc.stdout.readline()
        assert text, "the program ended early"
        return text.strip()

    def send(self, cmd: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()

    def finish(self) -> int:
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.stdin.close()  # type: ignore[union-attr]
            except BrokenPipeError:
                pass
        try:
            return self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for f in (self.proc.stdout, self.proc.stderr):
                if f is not None:
                    f.close()


@pytest.fixture
def program(tmp_path: Path, env: dict[str, str], request: pytest.FixtureRequest):
    made: list[Program] = []

    def start(*run_args: str) -> Program:
        p = Program(tmp_path, env, *run_args)
        made.append(p)
        return p

    yield start
    for p in made:
        p.finish()


def ctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "willowisp", "ctl", *args],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip


def status_json(env: dict[str, str], target: str) -> dict:
    r = ctl(env, target, "status", "--format", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_switch_boundaries_in_a_running_program(program, env):
    """status, disable and enable work on a live process, which keeps running."""
    p = program("--mode", "hops", "--boundary", "entry=http:GET /x")
    r = ctl(env, str(p.pid), "status")
    assert r.returncode == 0, r.stderr
    assert f"pid {p.pid}" in r.stdout and "http:GET /x" in r.stdout and "yes" in r.stdout
    assert "mode hops" in r.stdout

    r = ctl(env, str(p.pid), "disable", "http:GET /x")
    assert (r.returncode, r.stdout.strip()) == (0, f"disabled 'http:GET /x' in prog (pid {p.pid})")
    [proc] = status_json(env, str(p.pid))["processes"]
    assert [(b["name"], b["enabled"]) for b in proc["result"]["boundaries"]] == [
        ("http:GET /x", False)
    ]

    r = ctl(env, str(p.pid), "enable", "entry=http:POST /y;runtimes=python")
    assert r.returncode == 0, r.stderr
    r = ctl(env, str(p.pid), "enable", "http:GET /x")
    assert r.returncode == 0, r.stderr
    [proc] = status_json(env, str(p.pid))["processes"]
    result = proc["result"]
    assert {(b["name"], b["enabled"], b["source"]) for b in result["boundaries"]} == {
        ("http:GET /x", True, "config"),
        ("http:POST /y", True, "ctl"),
    }
    assert result["process_id"] == proc["process_id"] and result["runtime"] == "python"
    for key in ("events", "dropped", "faults", "cost_ns_per_event"):
        assert isinstance(result[key], int)
    assert result["control"]["malformed"] == 0
    # where its chunks go: this run writes segment files (no collector)
    assert result["sink"]["kind"] == "file" and result["sink"]["path"].endswith(".wtrace")

    p.send("work")
    assert p.line() == "done"  # the program never noticed
    assert p.finish() == 0
    assert os.listdir(env["WILLOWISP_RUNTIME_DIR"]) == []  # the channel cleaned up


def test_bad_boundary_is_one_line_and_exit_2(program, env):
    """A SPEC that does not parse, or disabling an unknown boundary: exit 2, one line."""
    p = program()
    for args in (["enable", "entry="], ["disable", "http:GET /nope"]):
        r = ctl(env, str(p.pid), *args)
        assert r.returncode == 2, r
        [line] = r.stderr.splitlines()
        assert line.startswith(f"willowisp ctl: prog (pid {p.pid}): bad-boundary: ")
        assert "Traceback" not in r.stderr


def test_run_folder_reaches_every_live_process(program, env):
    """ctl RUN_FOLDER acts on every live process of the run (a forked child has its own
    channel) and says which it reached."""
    p = program()
    p.send("fork")
    child = int(p.line())
    doc = status_json(env, str(p.out))
    got = {e["pid"]: e for e in doc["processes"]}
    assert set(got) == {p.pid, child}
    assert got[p.pid]["process_id"] != got[child]["process_id"]
    assert all(e["ok"] for e in got.values())
    r = ctl(env, str(p.out), "status")
    assert r.returncode == 0
    assert "reached 2 of 2 processes of the run" in r.stderr
    assert str(child) in r.stdout and str(p.pid) in r.stdout
    # both answer a bad SPEC with a refusal: reached, and said to have refused it
    r = ctl(env, str(p.out), "enable", "entry=bogus")
    assert r.returncode == 2
    assert "reached 2 of 2 processes of the run" in r.stderr, r.stderr
    assert "; 2 refused it (above)" in r.stderr, r.stderr
    [child_status] = status_json(env, str(child))["processes"]
    assert child_status["process_id"] == got[child]["process_id"]
    assert p.finish() == 0
    r = ctl(env, str(p.out), "status")
    assert r.returncode == 2 and "no process of run" in r.stderr


def test_channel_is_private_and_needs_the_token(program, env):
    """The socket is 0600 in a 0700 folder, the descriptor 0600; a wrong token is refused
    and does not disturb the right one."""
    p = program()
    folder = env["WILLOWISP_RUNTIME_DIR"]
    [desc_name] = [
        n for n in os.listdir(folder) if n.startswith(f"{p.pid}-") and n.endswith(".json")
    ]
    desc_path = os.path.join(folder, desc_name)
    desc = json.loads(Path(desc_path).read_text())
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(desc_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(desc["socket"]).st_mode) == 0o600
    assert desc["run"] == os.path.realpath(p.out)

    def hello(token: str) -> dict:
        body = json.dumps({"op": "hello", "versions": [1], "token": token}).encode()
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(desc["socket"])
            s.sendall(b"WCTL" + struct.pack("<I", len(body)) + body)
            data = b""
            while part := s.recv(4096):
                data += part
        (n,) = struct.unpack_from("<I", data, 4)
        return json.loads(data[8 : 8 + n])

    wrong = "0" * 32 if desc["token"] != "0" * 32 else "1" * 32
    assert hello(wrong)["error"]["code"] == "unauthorized"
    [proc] = status_json(env, str(p.pid))["processes"]
    assert proc["result"]["control"]["unauthorized"] == 1


def test_targets_without_an_agent(env, tmp_path):
    """A dead pid, a live process without an agent, a folder with no running process and
    something that is neither: exit 2 with one line each, never a traceback."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    bare = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE, env=env)  # fmt: skip
    try:
        cases = [
            ([dead.stdout.strip(), "status"], "is not running"),
            ([str(bare.pid), "status"], "has no Willowisp agent listening"),
            ([str(tmp_path), "status"], "no process of run"),
            ([str(tmp_path / "nope"), "status"], "neither a pid nor a run folder"),
            ([str(bare.pid), "status", "extra"], "status takes no BOUNDARY"),
            ([str(bare.pid), "enable"], "enable needs a BOUNDARY"),
        ]
        for args, message in cases:
            r = ctl(env, *args)
            assert r.returncode == 2, (args, r)
            [line] = r.stderr.splitlines()
            assert line.startswith("willowisp ctl: ") and message in line, line
    finally:
        bare.communicate(timeout=30)


def test_ctl_help():
    """ctl explains its targets, actions and exit status."""
    r = subprocess.run([sys.executable, "-m", "willowisp", "ctl", "--help"],
                       capture_output=True, text=True, check=False)  # fmt: skip
    assert r.returncode == 0 and "usage: willowisp ctl" in r.stdout
    for word in ("TARGET", "run folder", "enable", "disable", "status", "exit status"):
        assert word in r.stdout
