"""Finding, building and running ``wisp-goimport``, the Go program that reads Go execution
traces (``agents/go/cmd/wisp-goimport``; golang.org/x/exp/trace) for
:mod:`willowisp.ingest.go_trace`.

The helper is ``WILLOWISP_GOIMPORT``, else ``wisp-goimport`` on ``PATH``, else built once
from the Go agent's module source this package carries (``runtimes.go_agent_dir``: its
``_go_agent/`` copy, or a checkout's ``agents/go``) with the ``go`` toolchain into
``~/.cache/willowisp/bin/wisp-goimport-<hash of its sources>``. It runs with a timeout and
its output is bounded; its input is fed and its output drained on threads, so neither pipe
can fill and stall the other.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import IO

from willowisp.errors import TraceFormatError, TraceLimitError

MAX_STREAM_BYTES = 1024 * 1024 * 1024  # the helper's output, held whole while decoding
HELPER_TIMEOUT_S = 600.0
INSTALL_HINT = (
    "Go execution traces need the wisp-goimport helper, which Willowisp builds once from "
    "its own copy of the Go agent with the Go toolchain: put `go` on PATH, "
    "or set WILLOWISP_GOIMPORT to a wisp-goimport you built"
)
NO_SOURCE_HINT = (
    "Go execution traces need the wisp-goimport helper, and this Willowisp carries no Go "
    "agent source to build it from (reinstall it from a checkout, or set WILLOWISP_GOIMPORT "
    "to a wisp-goimport built in agents/go: go build ./cmd/wisp-goimport)"
)


def find_helper() -> str:
    """The helper's path (see the module doc for the search order). Raises TraceFormatError."""
    env = os.environ.get("WILLOWISP_GOIMPORT", "")
    if env:
        if not (os.path.isfile(env) and os.access(env, os.X_OK)):
            raise TraceFormatError(f"WILLOWISP_GOIMPORT={env} is not an executable file")
        return env
    on_path = shutil.which("wisp-goimport")
    if on_path:
        return on_path
    source = helper_source()
    if source is None:
        raise TraceFormatError(NO_SOURCE_HINT)
    target = cached_helper(source)
    if target.is_file():
        return str(target)
    go = shutil.which("go")
    if go is None:
        raise TraceFormatError(INSTALL_HINT)
    return build_helper(go, source, target)


def helper_source() -> Path | None:
    """The Go agent's module this package carries or runs from (with the helper's main
    package), None when there is none."""
    from willowisp.runtimes import go_agent_dir

    source = go_agent_dir()
    if source is None or not (source / "cmd" / "wisp-goimport").is_dir():
        return None
    return source


def _source_files(source: Path) -> list[Path]:
    files = [source / "go.mod", source / "go.sum"]
    files += sorted(p for p in (source / "cmd" / "wisp-goimport").glob("*.go"))
    return [f for f in files if f.is_file() and not f.name.endswith("_test.go")]


def cached_helper(source: Path) -> Path:
    """Where the build of these helper sources lives: one binary per version of them."""
    h = hashlib.sha256()
    for f in _source_files(source):
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return Path.home() / ".cache" / "willowisp" / "bin" / f"wisp-goimport-{h.hexdigest()[:16]}"


def build_helper(go: str, source: Path, target: Path) -> str:
    """Build the helper into ``target`` (atomically: a concurrent build just replaces it with
    the same binary). Raises TraceFormatError with the compiler's last line."""
    out_dir = target.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{target.name}.{os.getpid()}.tmp"
    env = {**os.environ, "GOFLAGS": "-mod=mod"}
    try:
        done = subprocess.run(
            [go, "build", "-o", str(tmp), "./cmd/wisp-goimport"],
            cwd=source,
            env=env,
            capture_output=True,
            timeout=HELPER_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TraceFormatError(f"building wisp-goimport failed: {exc}; {INSTALL_HINT}") from exc
    if done.returncode != 0:
        last = (done.stderr.decode("utf-8", "replace").strip().splitlines() or ["?"])[-1]
        raise TraceFormatError(f"building wisp-goimport failed: {last}; {INSTALL_HINT}")
    os.replace(tmp, target)  # atomic: a concurrent build just replaces it with the same
    return str(target)


def run_helper(helper: str, data: bytes) -> tuple[int, bytes, bytes]:
    """Run the helper with ``data`` on stdin: (exit status, stdout, stderr), bounded in
    time (:data:`HELPER_TIMEOUT_S`) and output (:data:`MAX_STREAM_BYTES`)."""
    try:
        proc = subprocess.Popen(
            [helper], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except OSError as exc:
        raise TraceFormatError(f"cannot run wisp-goimport ({helper}): {exc}") from exc
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    err_parts: list[bytes] = []
    threads = [
        threading.Thread(target=_feed, args=(proc.stdin, data), daemon=True),
        threading.Thread(target=_drain, args=(proc.stderr, err_parts), daemon=True),
    ]
    for th in threads:
        th.start()
    killed = threading.Event()

    def kill() -> None:
        killed.set()
        proc.kill()

    timer = threading.Timer(HELPER_TIMEOUT_S, kill)
    timer.start()
    out = bytearray()
    try:
        while chunk := proc.stdout.read(1 << 20):
            out += chunk
            if len(out) > MAX_STREAM_BYTES:
                raise TraceLimitError(
                    f"the Go trace's event stream is over {MAX_STREAM_BYTES} bytes"
                )
        code = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for th in threads:
            th.join(5)
        proc.stdout.close()
        proc.stderr.close()
    if killed.is_set():
        raise TraceFormatError(
            f"wisp-goimport took longer than {HELPER_TIMEOUT_S:.0f} s and was stopped"
        )
    return code, bytes(out), b"".join(err_parts)


def _drain(pipe: IO[bytes], into: list[bytes]) -> None:
    """Read a pipe to its end, keeping the first 64 KiB."""
    kept = 0
    while chunk := pipe.read(65536):
        if kept < 65536:
            into.append(chunk[: 65536 - kept])
            kept += len(into[-1])


def _feed(pipe: IO[bytes], data: bytes) -> None:
    try:
        pipe.write(data)
    except OSError:
        pass  # the helper stopped reading (it refused the input): its exit says why
    finally:
        try:
            pipe.close()
        except OSError:
            pass


def helper_message(err: bytes, code: int) -> str:
    text = err.decode("utf-8", "replace").strip().splitlines()
    line = text[0] if text else f"wisp-goimport exited with status {code}"
    for prefix in ("wisp-goimport: <stdin>: ", "wisp-goimport: "):
        if line.startswith(prefix):
            line = line[len(prefix) :]
            break
    return line if code == 2 else f"wisp-goimport failed (status {code}): {line}"
