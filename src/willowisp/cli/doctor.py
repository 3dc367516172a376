"""``willowisp doctor``: what this machine supports, in a few lines.

Runtimes and their versions, which agents are present, whether simulated hosts can be
real here (UTS namespaces, libfaketime), other Python interpreters the agent is tested on,
and the browser for the viewer. It never touches the network beyond 127.0.0.1.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import socket
import subprocess
import sys
from typing import Any

from willowisp import __version__
from willowisp.hostsim import can_unshare_uts, faketime_library
from willowisp.runtimes import java_agent_jar, node_register

RUNTIMES = (
    ("python", [sys.executable, "--version"]),
    ("go", ["go", "version"]),
    ("java", ["java", "-version"]),
    ("rust", ["rustc", "--version"]),
    ("node", ["node", "--version"]),
    ("gcc", ["gcc", "--version"]),
)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "doctor",
        help="what this machine supports",
        description="Report runtimes, agents, namespaces, fake-time "
        "library, other Python interpreters and browser on this machine.",
    )
    p.set_defaults(func=run)


def _version(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None and not os.path.isabs(argv[0]):
        return None
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "?"


def other_python_paths() -> dict[str, str]:
    """CPython 3.11+ interpreters installed beside the running one: version -> path (pyenv
    installs and PATH; pyenv's shims are skipped)."""
    found: dict[str, str] = {}
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[1-9]*/bin/python3")))
    candidates += [
        p for v in ("3.11", "3.12", "3.13", "3.14") if (p := shutil.which(f"python{v}") or "")
    ]
    for path in candidates:
        real = os.path.realpath(path)
        if real in found.values() or "shims" in path:
            continue
        v = _version([path, "--version"])
        if v and v.startswith("Python 3."):
            found.setdefault(v, real)
    return found


def other_pythons() -> list[str]:
    return [f"{v} ({p})" for v, p in sorted(other_python_paths().items())]


def _loopback_ok() -> bool:
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            with socket.create_connection(s.getsockname(), timeout=2):
                return True
    except OSError:
        return False


def _free_here() -> str:
    """Free space where ``willowisp run`` records by default (./wisp-traces)."""
    try:
        st = os.statvfs(".")
    except OSError as exc:
        return f"cannot tell the free space here ({exc.strerror})"
    free = st.f_bavail * st.f_frsize
    line = f"{free / 2**30:.1f} GiB free for ./wisp-traces (the default run folder)"
    if free < 1 << 30:
        line += "; agents count and report what a full disk makes them lose"
    return line


def _importers() -> list[str]:
    """What each importer needs here and whether it has it."""
    from willowisp.ingest import formats

    have = formats.names()
    out = [f"{'formats':8s} {', '.join(have)}"]
    if "go" in have:
        from willowisp.ingest.go_helper import cached_helper, helper_source

        env = os.environ.get("WILLOWISP_GOIMPORT", "")
        source = helper_source()
        if env:
            helper = f"WILLOWISP_GOIMPORT={env}"
        elif shutil.which("wisp-goimport"):
            helper = f"wisp-goimport on PATH ({shutil.which('wisp-goimport')})"
        elif source is not None and cached_helper(source).exists():
            helper = f"wisp-goimport built ({cached_helper(source)})"
        elif source is not None and shutil.which("go"):
            helper = "wisp-goimport is built with go on first use"
        elif source is not None:
            helper = "needs go on PATH, to build wisp-goimport once (or WILLOWISP_GOIMPORT)"
        else:
            helper = "needs WILLOWISP_GOIMPORT: no Go agent source here to build wisp-goimport"
        out.append(f"{'go':8s} {helper}")
    if "jfr" in have:
        from willowisp.ingest.jfr import jdk_tool

        jfr, javac = jdk_tool("jfr"), jdk_tool("javac")
        if javac:
            tool = f"javac ({javac}) builds the exporter; jfr at {jfr or 'not found'}"
        else:
            tool = f"jfr print --json ({jfr})" if jfr else "needs a JDK (jfr or javac on PATH)"
        out.append(f"{'jfr':8s} {tool}")
    import importlib.util

    grpc_ok = "yes" if importlib.util.find_spec("grpc") else "no (pip install grpcio)"
    out.append(f"{'collect':8s} OTLP/HTTP yes, OTLP/gRPC {grpc_ok}, native stream yes")
    return out


def run(args: argparse.Namespace) -> int:
    print(f"willowisp {__version__} on {sys.platform}, Python {sys.version.split()[0]}")
    print("runtimes:")
    for name, argv in RUNTIMES:
        v = _version(argv)
        print(f"  {name:8s} {v or 'not found'}")
    jvms = sorted(glob.glob("/usr/lib/jvm/*/bin/java"))
    if jvms:
        names = [os.path.basename(os.path.dirname(os.path.dirname(j))) for j in jvms]
        print(f"  JDKs     {', '.join(names)}")
    print("agents:")
    print("  python   yes (threads, asyncio, locks, queues, futures, http.client/server,")
    print("           fork/subprocess, gc)")
    register = node_register()
    if register is not None:
        print(f"  nodejs   yes (run sets NODE_OPTIONS=--require {register})")
    print(
        "  go       yes (link github.com/willowisp/willowisp/agents/go: import _ .../wisp/auto;"
        " run sets WILLOWISP_*)"
    )
    print(
        "  rust     yes (the willowisp crate in agents/rust: willowisp::init(); tokio needs"
        " --cfg tokio_unstable)"
    )
    jar = java_agent_jar()
    if jar is not None:
        if jar.parent.name == "target":  # run snapshots a build output (runtimes.py)
            print(
                f"  java     yes (run sets JAVA_TOOL_OPTIONS=-javaagent: to a snapshot of {jar}"
                " in ~/.cache/willowisp/java-agent, which no rebuild rewrites under a JVM)"
            )
        else:
            print(f"  java     yes (run sets JAVA_TOOL_OPTIONS=-javaagent:{jar})")
    else:
        print("  java     not built here (cd agents/java && mvn package), or WILLOWISP_JAVA_AGENT")
    if register is None:
        print("  nodejs   not in this build")
    pythons = other_pythons()
    print("importers (willowisp import / analyze FILE):")
    for line in _importers():
        print(f"  {line}")
    print(f"python interpreters: {', '.join(pythons) if pythons else 'only this one'}")
    print("simulated hosts:")
    uts = "yes (root + unshare)" if can_unshare_uts() else "no (needs root and unshare)"
    print(f"  UTS namespaces  {uts}")
    lib = faketime_library() or (
        "libfaketime not installed: clock skew is simulated (apt-get install faketime)"
    )
    print(f"  fake time       {lib}")
    netns = os.geteuid() == 0 and shutil.which("ip") is not None
    print(f"  network ns      {'yes (root + ip netns)' if netns else 'no'}")
    browser = (
        shutil.which("chromium")
        or shutil.which("chromium-browser")
        or shutil.which("google-chrome")
    )
    print(f"browser: {browser or 'none found (the viewer works in any browser you open)'}")
    print(f"disk: {_free_here()}")
    print(
        f"network: loopback {'ok' if _loopback_ok() else 'NOT available'}; Willowisp serves and "
        "tests on 127.0.0.1 and namespaces it creates only, never other addresses"
    )
    return 0
