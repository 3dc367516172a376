"""``willowisp ctl TARGET status | enable BOUNDARY | disable BOUNDARY``: a running process.

TARGET is a pid or a run folder. Each agent with a control channel leaves a descriptor
(pid, run folder, socket, token; mode 0600) in the per-user runtime folder; this command
finds those of the pid or of the run, speaks the control protocol of ``docs/protocols.md``
to each live process, and prints what each one answered. Stale descriptors (the process
was killed) are removed on the way.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import socket
import stat
import sys
import textwrap
from dataclasses import dataclass
from typing import Any

from willowisp import __version__
from willowisp.channel.discovery import check_private_dir, runtime_dir
from willowisp.channel.frames import (
    CONTROL_MAGIC,
    CONTROL_VERSIONS,
    MAX_CONTROL_BODY,
    pack_frame,
    parse_object,
    read_frame,
)
from willowisp.errors import ProtocolError, UsageError

MAX_DESCRIPTOR_BYTES = 64 * 1024
ACTIONS = ("status", "enable", "disable")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "ctl",
        help="switch boundaries to full fidelity in a running process; show its counters",
        description=textwrap.fill(
            "Talk to the agent inside running processes, without restarting them. TARGET is "
            "a pid, or a run folder (then every live process of the run is reached, and the "
            "command says which). 'status' shows each agent's counters and its own cost per "
            "boundary; 'enable' switches a boundary to full fidelity (a known one by name, "
            "or a new one from a full SPEC); 'disable' switches it back.",
            78,
        ),
        epilog="examples:\n"
        "  willowisp ctl 4242 status\n"
        "  willowisp ctl ./wisp-traces/20250101T120000Z status --format json\n"
        "  willowisp ctl 4242 enable 'entry=http:POST /checkout;runtimes=python,go'\n"
        "  willowisp ctl 4242 disable 'http:POST /checkout'\n\n"
        "exit status: 0 when every live process of TARGET did it; 2 for a TARGET without\n"
        "a running agent, a refused boundary or any other error (one line each on stderr)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", metavar="TARGET", help="a pid, or a run folder")
    p.add_argument("action", choices=ACTIONS, metavar="ACTION", help="status, enable or disable")
    p.add_argument(
        "boundary",
        nargs="?",
        metavar="BOUNDARY",
        help="for enable/disable: a boundary's name (its entry, e.g. 'http:POST /checkout'), "
        "its id, or (enable) a full SPEC 'entry=...;exit=...;runtimes=...'",
    )
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    p.add_argument(
        "--timeout", type=float, default=5.0, metavar="S", help="per-process timeout (seconds)"
    )
    p.set_defaults(func=run)


# --- finding the agents -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Agent:
    """One agent's control channel, from its descriptor."""

    pid: int
    process_id: str
    service: str
    socket: str  # Unix socket path, '' if none
    tcp: str  # "127.0.0.1:PORT", '' if none
    token: str
    run: str  # the run folder's real path
    descriptor: str  # the descriptor file

    @property
    def label(self) -> str:
        return f"{self.service or '?'} (pid {self.pid})"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive, but not ours to reach
        return True
    return True


def load_descriptor(path: str) -> Agent | None:
    """A descriptor we can trust (a regular 0600 file of ours, well-formed), else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
            return None
        data = os.read(fd, MAX_DESCRIPTOR_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_DESCRIPTOR_BYTES:
        return None
    try:
        d = parse_object(data)
    except ProtocolError:
        return None
    fields = (d.get("pid"), d.get("process_id"), d.get("service"), d.get("token"))
    if not (
        isinstance(fields[0], int)
        and all(isinstance(f, str) for f in fields[1:])
        and isinstance(d.get("socket", ""), str)
        and isinstance(d.get("tcp", ""), str)
        and isinstance(d.get("run", ""), str)
    ):
        return None
    return Agent(
        pid=int(d["pid"]),
        process_id=str(d["process_id"]),
        service=str(d["service"]),
        socket=str(d.get("socket", "")),
        tcp=str(d.get("tcp", "")),
        token=str(d["token"]),
        run=str(d.get("run", "")),
        descriptor=path,
    )


def _private_runtime_dir() -> str | None:
    folder = runtime_dir()
    try:
        check_private_dir(folder, create=False)
    except OSError:
        return None
    return folder


def remove_stale(agent: Agent) -> None:
    """The process is gone: remove what its agent could not (killed, os._exit, ...)."""
    for path in (agent.descriptor, agent.socket):
        if path:
            with contextlib.suppress(OSError):
                os.unlink(path)


def agents_of_pid(pid: int) -> list[Agent]:
    """The live agents of process ``pid``. UsageError when there is none."""
    if not alive(pid):
        raise UsageError(f"process {pid} is not running")
    folder = _private_runtime_dir()
    found = []
    if folder is not None:
        for path in sorted(glob.glob(os.path.join(glob.escape(folder), f"{pid}-*.json"))):
            agent = load_descriptor(path)
            if agent is not None and agent.pid == pid:
                found.append(agent)
    if not found:
        raise UsageError(
            f"process {pid} has no Willowisp agent listening (no descriptor in "
            f"{runtime_dir()}; not started under willowisp, WILLOWISP_CONTROL=off, or "
            "another user's process)"
        )
    return found


def agents_of_run(folder: str) -> tuple[list[Agent], list[str]]:
    """The live agents whose run folder is ``folder``, and labels of those that are gone
    (killed without cleaning up; their descriptors are removed)."""
    real = os.path.realpath(folder)
    rt = _private_runtime_dir()
    found: list[Agent] = []
    gone: list[str] = []
    paths = sorted(glob.glob(os.path.join(glob.escape(rt), "*.json"))) if rt else []
    for path in paths:
        agent = load_descriptor(path)
        if agent is None or agent.run != real:
            continue
        if alive(agent.pid):
            found.append(agent)
        else:
            gone.append(agent.label)
            remove_stale(agent)
    if not found:
        raise UsageError(
            f"no process of run {folder} is running with a control channel"
            + (f" ({len(gone)} finished)" if gone else "")
        )
    return found, gone


def resolve(target: str) -> tuple[list[Agent], list[str]]:
    """TARGET (a pid or a run folder) -> live agents, and the processes that are gone."""
    if target.isdigit():
        return agents_of_pid(int(target)), []
    if os.path.isdir(target):
        return agents_of_run(os.path.abspath(target))
    raise UsageError(f"TARGET {target!r} is neither a pid nor a run folder")


# --- talking to one agent ---------------------------------------------------------------


class CtlError(Exception):
    """An agent answered with an error, or could not be reached."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _connect(agent: Agent, timeout: float) -> socket.socket:
    if agent.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        addr: Any = agent.socket
    else:
        host, _, port = agent.tcp.rpartition(":")
        if host != "127.0.0.1" or not port.isdigit():
            raise CtlError("unreachable", f"descriptor names no socket ({agent.tcp!r})")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        addr = (host, int(port))
    sock.settimeout(timeout)
    try:
        sock.connect(addr)
    except OSError as exc:
        sock.close()
        raise CtlError("unreachable", f"cannot connect: {exc.strerror or exc}") from None
    return sock


def _exchange(sock: socket.socket, request: dict[str, Any]) -> dict[str, Any]:
    sock.sendall(pack_frame(CONTROL_MAGIC, request))
    try:
        body = read_frame(sock, CONTROL_MAGIC, MAX_CONTROL_BODY)
    except ProtocolError as exc:
        raise CtlError("bad-frame", f"the agent's reply is malformed: {exc}") from None
    if body is None:
        raise CtlError("closed", "the agent closed the connection")
    try:
        reply = parse_object(body)
    except ProtocolError as exc:
        raise CtlError(exc.code, f"the agent's reply is malformed: {exc.message}") from None
    if reply.get("ok") is True and isinstance(reply.get("result"), dict):
        return dict(reply["result"])
    err = reply.get("error") if isinstance(reply.get("error"), dict) else {}
    assert isinstance(err, dict)
    raise CtlError(str(err.get("code", "error")), str(err.get("message", "refused")))


def call(agent: Agent, op: str, timeout: float, **args: Any) -> dict[str, Any]:
    """Hello, then one request; the result, or CtlError."""
    sock = _connect(agent, timeout)
    try:
        _exchange(
            sock,
            {
                "op": "hello",
                "versions": list(CONTROL_VERSIONS),
                "token": agent.token,
                "client": f"willowisp-ctl/{__version__}",
            },
        )
        return _exchange(sock, {"op": op, **args})
    except TimeoutError:
        raise CtlError("timeout", f"no answer within {timeout:g} s") from None
    except OSError as exc:
        raise CtlError("unreachable", f"connection failed: {exc.strerror or exc}") from None
    finally:
        sock.close()


# --- the command ------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    action: str = args.action
    if action == "status" and args.boundary is not None:
        raise UsageError("status takes no BOUNDARY")
    if action != "status" and not (args.boundary or "").strip():
        raise UsageError(f"{action} needs a BOUNDARY (a name like 'http:POST /x', or a SPEC)")
    if not args.timeout > 0:
        raise UsageError(f"--timeout {args.timeout} must be positive")
    agents, gone = resolve(args.target)
    extra = {} if action == "status" else {"boundary": args.boundary}
    results: list[dict[str, Any]] = []
    failed = 0
    for agent in agents:
        entry: dict[str, Any] = {
            "pid": agent.pid,
            "process_id": agent.process_id,
            "service": agent.service,
        }
        try:
            entry["result"] = call(agent, action, args.timeout, **extra)
            entry["ok"] = True
        except CtlError as exc:
            if exc.code in ("unreachable", "closed") and not alive(agent.pid):
                remove_stale(agent)
                exc = CtlError("gone", "not running")
            entry["ok"] = False
            entry["error"] = {"code": exc.code, "message": exc.message}
            failed += 1
        results.append(entry)
    if args.format == "json":
        doc = {"schema": "willowisp.ctl/1", "action": action, "processes": results}
        if not args.target.isdigit():
            doc["finished"] = gone
        print(json.dumps(doc, indent=2, sort_keys=False))
    else:
        _print_text(action, results)
    for entry in results:
        if not entry["ok"]:
            err = entry["error"]
            print(
                f"willowisp ctl: {entry['service']} (pid {entry['pid']}): "
                f"{err['code']}: {err['message']}",
                file=sys.stderr,
            )
    if not args.target.isdigit():
        print(_summary(results, gone), file=sys.stderr)
    return 2 if failed else 0


# Error codes that mean the request never got an answer from the agent (the others are the
# agent's own refusals: it was reached and said no).
_UNANSWERED = {"unreachable", "closed", "timeout", "bad-frame", "gone"}


def _summary(results: list[dict[str, Any]], gone: list[str]) -> str:
    """``reached 8 of 8 processes of the run: ...; 8 refused it`` — a process that answered
    with a refusal was reached (the QA's "reached 0 of 8: none" when all eight said no)."""
    name = [f"{e['service']} (pid {e['pid']})" for e in results]
    reached = [
        n
        for n, e in zip(name, results, strict=True)
        if e["ok"] or e["error"]["code"] not in _UNANSWERED
    ]
    refused = [n for n, e in zip(name, results, strict=True) if not e["ok"] and n in reached]
    line = f"willowisp ctl: reached {len(reached)} of {len(results) + len(gone)} processes"
    line += f" of the run: {', '.join(reached) or 'none'}"
    if refused:
        line += f"; {len(refused)} refused it (above)"
    if gone:
        line += f"; finished: {', '.join(gone)}"
    return line


def _print_text(action: str, results: list[dict[str, Any]]) -> None:
    for entry in results:
        if not entry["ok"]:
            continue
        r = entry["result"]
        if action != "status":
            verb = "enabled" if action == "enable" else "disabled"
            print(f"{verb} {r.get('boundary', '?')!r} in {entry['service']} (pid {entry['pid']})")
            continue
        print(status_text(entry, r))


def _ns(v: Any) -> str:
    if not isinstance(v, int | float):
        return "-"
    if v >= 1e9:
        return f"{v / 1e9:.2f} s"
    if v >= 1e6:
        return f"{v / 1e6:.1f} ms"
    if v >= 1e3:
        return f"{v / 1e3:.1f} µs"
    return f"{v:.0f} ns"


def status_text(entry: dict[str, Any], r: dict[str, Any]) -> str:
    """One process's status as a small readable block."""
    lines = [
        f"{entry['service']}  pid {entry['pid']}  process {entry['process_id'][:8]}  "
        f"{r.get('runtime', '?')}  mode {r.get('mode', '?')}"
        + ("  (gate on: concurrency recorded inside boundaries only)" if r.get("gate") else ""),
        f"  events {r.get('events', 0)}  dropped {r.get('dropped', 0)}  "
        f"faults {r.get('faults', 0)}  cost {_ns(r.get('cost_ns_per_event'))}/event",
    ]
    ctl = r.get("control")
    if isinstance(ctl, dict):
        lines.append(
            f"  control: {ctl.get('connections', 0)} connections, "
            f"{ctl.get('malformed', 0)} malformed, {ctl.get('unauthorized', 0)} unauthorized"
        )
    bounds = r.get("boundaries")
    if isinstance(bounds, list) and bounds:
        rows = [
            ("boundary", "enabled", "source", "entries", "propagated", "active", "events", "cost")
        ]
        for b in bounds:
            if not isinstance(b, dict):
                continue
            rows.append(
                (
                    str(b.get("name", "?")),
                    "yes" if b.get("enabled") else "no",
                    str(b.get("source", "")),
                    str(b.get("entries", 0)),
                    str(b.get("propagated", 0)),
                    str(b.get("active", 0)),
                    str(b.get("events", 0)),
                    _ns(b.get("cost_ns")),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            cells = [
                c.ljust(w) if i < 3 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ]
            lines.append("  " + "  ".join(cells).rstrip())
    else:
        lines.append("  no boundaries declared")
    return "\n".join(lines)
