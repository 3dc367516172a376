"""Where the other runtimes' agents are, for ``willowisp run`` and ``doctor``.

The Node agent's JavaScript ships inside this package (``_node_agent/``, the npm package
``agents/node`` of the repository); ``run`` loads it into every Node process it starts with
``NODE_OPTIONS=--require <absolute path>/register.js``. The Java agent is a jar that Maven
builds (``agents/java``); ``run`` adds ``-javaagent:<jar>`` to ``JAVA_TOOL_OPTIONS`` when it
finds one: ``WILLOWISP_JAVA_AGENT``, else the copy a wheel build put in ``_java_agent/``,
else the checkout's ``agents/java/target``. Go and Rust programs link their agent
themselves and read the ``WILLOWISP_*`` variables ``run`` sets for every child; the Go
agent's module source ships inside this package too (``_go_agent/``, see go_agent_dir).

A JVM maps its agent jar and reads it for as long as it runs; Maven rewrites
``target/willowisp-agent.jar`` in place, and a JVM reading a jar rewritten under it dies
(SIGBUS in libzip). So ``run`` never hands a JVM the checkout's build output: it hands it a
snapshot under ``~/.cache/willowisp/java-agent/<size>-<mtime>/``, written to a temporary
name and renamed into place (a rebuild makes a new snapshot; old ones are removed, which
an open file survives on Linux).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def node_register() -> Path | None:
    """The Node agent's ``register.js``, None if this build has no Node agent."""
    for base in (Path(__file__).parent / "_node_agent", _HERE.parent.parent / "agents" / "node"):
        path = base / "register.js"
        if path.is_file():
            return path.resolve()
    return None


def node_options(existing: str) -> str:
    """``NODE_OPTIONS`` with the Node agent required (once), the user's options kept."""
    register = node_register()
    if register is None:
        return existing
    require = f"--require {_quote(str(register))}"
    if require in existing:
        return existing
    return f"{existing} {require}".strip()


def _quote(path: str) -> str:
    """NODE_OPTIONS splits on spaces; a path with one is double-quoted (Node reads that)."""
    return f'"{path}"' if " " in path else path


JAVA_JAR = "willowisp-agent.jar"
GO_MODULE = "github.com/willowisp/willowisp/agents/go"


def go_agent_dir() -> Path | None:
    """The Go agent's module source (``go.mod`` of ``GO_MODULE``): the copy inside this
    package (``_go_agent/``: what a program links with a ``replace`` directive, and what
    ``wisp-goimport`` is built from), else the checkout's ``agents/go``; None if neither."""
    for base in (Path(__file__).parent / "_go_agent", _HERE.parent.parent / "agents" / "go"):
        if (base / "go.mod").is_file():
            return base.resolve()
    return None


def java_agent_jar() -> Path | None:
    """The Java agent's jar, None if there is none here (not built)."""
    env = os.environ.get("WILLOWISP_JAVA_AGENT", "")
    candidates = [Path(env)] if env else []
    candidates += [
        Path(__file__).parent / "_java_agent" / JAVA_JAR,
        _HERE.parent.parent / "agents" / "java" / "target" / JAVA_JAR,
    ]
    for path in candidates:
        if path.is_file():
            return path.resolve()
    return None


def java_tool_options(existing: str) -> str:
    """``JAVA_TOOL_OPTIONS`` with the Java agent added (once), the user's options kept."""
    jar = java_agent_jar()
    if jar is None:
        return existing
    if jar.parent.name == "target":  # a build output Maven rewrites in place
        jar = stable_jar(jar)
    option = f"-javaagent:{_quote(str(jar))}"
    if option in existing:
        return existing
    return f"{existing} {option}".strip()


KEEP_SNAPSHOTS = 3
SNAPSHOT_IDLE_S = 3600  # a snapshot no run used for this long may go


def stable_jar(jar: Path, cache_home: str | None = None) -> Path:
    """A snapshot of ``jar`` that no rebuild rewrites (see the module's docstring); the jar
    itself when no snapshot can be made (a read-only home) or the jar is mid-rewrite."""
    base = Path(cache_home or os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    root = base / "willowisp" / "java-agent"
    try:
        st = jar.stat()
        target = root / f"{st.st_size}-{st.st_mtime_ns}" / jar.name
        if target.is_file():
            with contextlib.suppress(OSError):  # in use: not pruned by another session
                os.utime(target.parent)
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out, jar.open("rb") as src:
                shutil.copyfileobj(src, out)
            if not zipfile.is_zipfile(tmp) or jar.stat().st_mtime_ns != st.st_mtime_ns:
                return jar  # caught mid-build: the next run snapshots the finished jar
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        _prune(root, keep=target.parent)
        return target
    except OSError:
        return jar


def _prune(root: Path, keep: Path) -> None:
    """Remove the snapshots past the newest few that no run used for an hour (a running
    JVM keeps its open file; one about to start, in another checkout or session, has only
    the path, so a snapshot used lately stays)."""
    old = sorted(
        (d for d in root.iterdir() if d.is_dir() and d != keep),
        key=lambda d: d.stat().st_mtime_ns,
        reverse=True,
    )
    idle_since = time.time() - SNAPSHOT_IDLE_S
    for d in old[KEEP_SNAPSHOTS - 1 :]:
        with contextlib.suppress(OSError):
            if d.stat().st_mtime < idle_since:
                shutil.rmtree(d, ignore_errors=True)
