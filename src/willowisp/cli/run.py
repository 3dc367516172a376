"""``willowisp run [options] -- CMD [ARG...]``: run a program with the agents enabled.

Everything reaches the program (and its children) through the environment: PYTHONPATH
gets a folder whose sitecustomize starts the Python agent, and WILLOWISP_* say where to
write and how. The exit status is CMD's. SIGINT, SIGTERM and SIGHUP sent to us are passed
on to CMD, except a Ctrl-C or hangup of the terminal whose foreground process group holds
us both: CMD got that one already (a second SIGINT interrupts an asyncio program's own
handling of the first).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from typing import Any

from willowisp.agent.bootstrap import agent_path
from willowisp.agent.config import MODES, RESERVE_PREFIX
from willowisp.cli.ctl import alive
from willowisp.errors import UsageError
from willowisp.model.boundary import merge_boundaries, parse_boundary
from willowisp.model.redaction import parse_redaction
from willowisp.project_config import load_project_config
from willowisp.runtimes import java_agent_jar, java_tool_options, node_options


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run a command with the agents enabled and record it",
        description="Run CMD with the Python agent loaded into it and every child Python "
        "process (NODE_OPTIONS / JAVA_TOOL_OPTIONS / WILLOWISP_* are set for the other "
        "runtimes' agents). Writes one or more .wtrace segments per process into the run "
        "folder. The exit status is CMD's.",
        epilog="example: willowisp run --out ./traces -- python app.py --port 8080",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="run folder (default: WILLOWISP_OUT, else ./wisp-traces/<UTC timestamp>/)",
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default=None,
        help="full (default, or WILLOWISP_MODE): every concurrency event (debugging); hops: "
        "only hops, sampled traces and declared boundaries (always-on use)",
    )
    p.add_argument(
        "--trace-ratio",
        type=float,
        default=None,
        metavar="R",
        help="fraction of logical operations sampled at their root (0..1; default: "
        "WILLOWISP_TRACE_RATIO, else 1)",
    )
    p.add_argument(
        "--boundary",
        action="append",
        default=[],
        metavar="SPEC",
        help="a transaction recorded at full fidelity, e.g. "
        "'entry=http:POST /checkout;exit=http:reply;runtimes=python,go'",
    )
    p.add_argument(
        "--service",
        help="service name (default: WILLOWISP_SERVICE, OTEL_SERVICE_NAME, or the program's name)",
    )
    p.add_argument(
        "--redact",
        action="append",
        default=[],
        metavar="ITEM",
        help="keep more than the defaults (shapes, not values): header:NAME adds a request "
        "header to the allowlist, -header:NAME removes one, bodies records entry request "
        "bodies (first 64 KiB), query-values keeps URL query values, sql-values keeps "
        "database row keys instead of hashes (repeatable)",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="project configuration (default: ./willowisp.toml if present); options given "
        "here and WILLOWISP_* variables win over it, boundaries from both apply",
    )
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARG...]")
    p.set_defaults(func=run)


def build_env(
    out: str,
    mode: str,
    ratio: float,
    boundaries: list[str],
    service: str | None,
    base: dict[str, str] | None = None,
) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    path = agent_path()
    old = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = path + (os.pathsep + old if old else "")
    env["WILLOWISP_OUT"] = out
    env["WILLOWISP_MODE"] = mode
    env["WILLOWISP_TRACE_RATIO"] = repr(ratio)
    env["WILLOWISP_RUN_PID"] = str(os.getpid())
    env["NODE_OPTIONS"] = node_options(env.get("NODE_OPTIONS", ""))
    java = java_tool_options(env.get("JAVA_TOOL_OPTIONS", ""))
    if java:
        env["JAVA_TOOL_OPTIONS"] = java
    else:  # an empty one makes every JVM print "Picked up JAVA_TOOL_OPTIONS: "
        env.pop("JAVA_TOOL_OPTIONS", None)
    if boundaries:
        for spec in boundaries:  # run() checks them with their sources; this is the backstop
            check_separable(spec, "boundary")
        env["WILLOWISP_BOUNDARIES"] = "|".join(boundaries)
    if service:
        env["WILLOWISP_SERVICE"] = service
    return env


def check_separable(spec: str, source: str) -> None:
    """UsageError for a SPEC holding ``|``: WILLOWISP_BOUNDARIES separates SPECs with it, so
    every agent would read such a SPEC as two (the Node agent then refuses to start)."""
    if "|" in spec:
        raise UsageError(
            f"{source} {spec!r}: '|' separates boundaries in WILLOWISP_BOUNDARIES, so a SPEC"
            " cannot contain it (declare each alternative as its own boundary)"
        )


def run(args: argparse.Namespace) -> int:
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise UsageError(
            "nothing to run: give the command after --, e.g. willowisp run -- python app.py"
        )
    project = load_project_config(args.config)
    # each setting: the option, else its WILLOWISP_* variable, else the project's file,
    # else the default
    ratio = args.trace_ratio
    if ratio is None:
        ratio = env_ratio() if os.environ.get("WILLOWISP_TRACE_RATIO") else None
    if ratio is None:
        ratio = float(project.run_option("trace_ratio", 1.0))
    if not 0.0 <= ratio <= 1.0:
        raise UsageError(f"--trace-ratio {ratio} is not between 0 and 1")
    mode = args.mode or env_mode() or project.run_option("mode", "full")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = os.path.abspath(
        args.out
        or os.environ.get("WILLOWISP_OUT")
        or os.path.join(project.run_option("out", "wisp-traces"), stamp)
    )
    if agents_disabled():
        print(
            "willowisp: WILLOWISP_DISABLED is set: the agents record nothing; running the"
            " command as it is",
            file=sys.stderr,
        )
    elif starts_a_jvm(cmd) and java_agent_jar() is None:
        print(
            "willowisp: no Java agent here, so JVMs run unrecorded: build it (cd agents/java"
            " && mvn -q package) before installing Willowisp from the checkout, or set"
            " WILLOWISP_JAVA_AGENT to its jar",
            file=sys.stderr,
        )
    given = tuple(parse_boundary(spec) for spec in args.boundary)
    for b in given:
        check_separable(b.spec, "--boundary")
    for b in project.boundaries:
        check_separable(b.spec, f"{project.path}: boundary")
    specs = [b.spec for b in merge_boundaries(given, project.boundaries)]
    redaction = parse_redaction([*project.redact, *args.redact])
    env = build_env(out, mode, ratio, specs, args.service or project.run_option("service"))
    env.pop("WILLOWISP_REDACT", None)
    if redaction.items():
        env["WILLOWISP_REDACT"] = ",".join(redaction.items())
    os.makedirs(out, exist_ok=True)  # after every check: a refused run leaves no folder
    collector = env.get("WILLOWISP_COLLECTOR", "").strip()
    if agents_disabled():
        pass
    elif collector:
        print(
            f"willowisp: streaming to the collector at {collector} (what it cannot take goes"
            f" into {out})",
            file=sys.stderr,
        )
    else:
        print(f"willowisp: recording into {out}", file=sys.stderr)
    try:
        proc = subprocess.Popen(cmd, env=env)
    except (FileNotFoundError, PermissionError) as exc:
        with contextlib.suppress(OSError):  # nothing ran: no empty run folder left
            os.rmdir(out)
            if not args.out:
                os.rmdir(os.path.dirname(out))  # the default parent, when it is empty
        reason = "permission denied" if isinstance(exc, PermissionError) else exc.strerror
        raise UsageError(f"cannot run {cmd[0]!r}: {reason}") from exc

    code = wait_passing_signals(proc)
    remove_stale_reserves(out)
    warn_if_full(out)
    if agents_disabled():
        with contextlib.suppress(OSError):  # nothing was recorded: no empty folder left
            os.rmdir(out)
            if not args.out and not os.environ.get("WILLOWISP_OUT"):
                os.rmdir(os.path.dirname(out))  # the default parent, when it is empty
    else:
        say_where(out, collector)
    return code if code >= 0 else 128 - code


JVM_LAUNCHERS = ("java", "mvn", "mvnw", "gradle", "gradlew", "sbt", "kotlin", "jshell", "jbang")


def starts_a_jvm(cmd: list[str]) -> bool:
    """Does the command start a JVM by its name? (run cannot know what a script starts: this
    is only for a warning)"""
    return os.path.basename(cmd[0]) in JVM_LAUNCHERS


def agents_disabled() -> bool:
    """WILLOWISP_DISABLED=1 (anything but empty or 0): every agent stays off."""
    return os.environ.get("WILLOWISP_DISABLED", "") not in ("", "0")


def env_ratio() -> float:
    raw = os.environ.get("WILLOWISP_TRACE_RATIO", "")
    try:
        ratio = float(raw)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise UsageError(f"WILLOWISP_TRACE_RATIO={raw!r} is not a number between 0 and 1")
    return ratio


def env_mode() -> str | None:
    raw = os.environ.get("WILLOWISP_MODE", "")
    if not raw:
        return None
    if raw not in ("full", "hops"):
        raise UsageError(f"WILLOWISP_MODE={raw!r} is not full or hops")
    return raw


PASSED_ON = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
TERMINAL_SENDS = (signal.SIGINT, signal.SIGHUP)  # Ctrl-C, a hangup: to a whole group


def wait_passing_signals(proc: subprocess.Popen[bytes]) -> int:
    """Wait for CMD; pass it SIGINT/SIGTERM/SIGHUP sent to us. While we are in a terminal's
    foreground process group with CMD, a SIGINT or SIGHUP is the terminal's (Ctrl-C, a
    hangup), which reached CMD as well: passing it on would deliver it twice. The wait
    wakes every 0.2 s so a handler runs even when the signal landed on another of our
    threads (numpy's, say), which leaves a blocking wait uninterrupted."""

    def forward(signum: int, frame: Any) -> None:
        if signum in TERMINAL_SENDS and terminal_group_has(proc.pid):
            return  # CMD has it already
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in PASSED_ON}
    try:
        while True:
            with contextlib.suppress(subprocess.TimeoutExpired):
                return proc.wait(timeout=0.2)
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def terminal_group_has(pid: int) -> bool:
    """Are we and ``pid`` in the foreground process group of our controlling terminal?"""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False  # no controlling terminal: nothing else sent it
    try:
        group = os.tcgetpgrp(fd)
        return group == os.getpgrp() == os.getpgid(pid)
    except OSError:
        return False
    finally:
        os.close(fd)


def say_where(out: str, collector: str) -> None:
    """Where the run is: the folder, or the collector it streamed to (the folder then holds
    only what fell back to files, if anything; an empty one is removed). The suggested
    command is shell-quoted: it is meant to be pasted, and a folder name may hold anything."""
    arg = shlex.quote(out)
    if not collector:
        print(f"willowisp: run saved in {arg}  (next: willowisp analyze {arg})", file=sys.stderr)
        return
    if any(name.endswith(".wtrace") for name in os.listdir(out)):
        print(
            f"willowisp: run streamed to the collector at {collector}; what it could not"
            f" take is in {arg}  (next: willowisp analyze {arg} and the collector's folder)",
            file=sys.stderr,
        )
        return
    with contextlib.suppress(OSError):
        os.rmdir(out)
    print(
        f"willowisp: run streamed to the collector at {collector}"
        "  (next: willowisp analyze the collector's --out folder)",
        file=sys.stderr,
    )


FULL_BYTES = 1024 * 1024  # free space below which the run's end warns


def warn_if_full(out: str) -> None:
    """A run folder on a (nearly) full file system: the agents' writes were likely refused;
    each says what it lost in its own stderr line and in the trace when it could."""
    try:
        st = os.statvfs(out)
    except OSError:
        return
    free = st.f_bavail * st.f_frsize
    if free < FULL_BYTES:
        print(
            f"willowisp: the file system of {out} is full ({free // 1024} KiB free): "
            "recorded events may be missing (analyze reports what the agents could count)",
            file=sys.stderr,
        )


def remove_stale_reserves(out: str) -> None:
    """The room Python agents keep for the news of a full disk (agent/reserve.py) is a
    hidden file each removes at exit; a killed process leaves its own behind."""
    try:
        names = os.listdir(out)
    except OSError:
        return
    for name in names:
        if not name.startswith(RESERVE_PREFIX):
            continue
        pid = name[len(RESERVE_PREFIX) :]
        if pid.isdigit() and not alive(int(pid)):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(out, name))
