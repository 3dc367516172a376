"""Trace files still being written: a torn end whose writer lives is work in progress.

A gate run next to a live service reads segments their agents are still appending to. A
reader that races a write, or finds a segment just opened, sees a file that ends inside a
chunk (or inside its header) — the same bytes a writer killed mid-write leaves. What tells
them apart is whether the writer is still alive, so for each torn end this module asks the
machine:

- **the writer by pid**: the pid of the segment's process record (else of its file name) is
  a live, non-zombie process here, on the boot the record names (when it names one), that
  started before the file was last written. A pid the kernel reused after the writer died
  belongs to a process started later than the writer's last write, so it is not taken for
  the writer.
- **the writer by descriptor**: failing that, a process here holds the file open for
  writing (a collector writing the segments of agents on other hosts).

Only a torn *end* is excused — a cut last chunk, a header or first chunk not yet whole, or
an embedded stream whose next piece is not written yet — and only its notes change: the
complete chunks are used as before. A corrupt chunk in the middle, or a file that is not a
trace, is damage whoever writes it. A writer on another host, or in another pid namespace,
is not seen, and its torn file stays a problem: the gate errs towards failing.

Trade-off: /proc is read only for files that are torn, so a clean recording costs nothing;
the descriptor scan (every process's open files) runs only when the pid did not answer.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from willowisp.errors import TraceFormatError
from willowisp.ingest.files import parse_segment_name
from willowisp.ingest.tables import Process
from willowisp.ingest.trace import Trace
from willowisp.model.spec import FORMAT_MAJOR
from willowisp.wtrace.framing import (
    CHUNK_HEADER_SIZE,
    CHUNK_MAGIC,
    FILE_HEADER_SIZE,
    FILE_MAGIC,
    parse_chunk_header,
    parse_file_header,
    unpack_payload,
)

# How "<file> (embedded stream N, FORMAT)" names a stream of a file (ingest/files.py), and
# what it says of a stream whose next piece is not written yet: either it could not be read
# at all, or its reader used the cut copy (the note then starts with the stream's name).
_EMBEDDED = " (embedded stream "
_LAST_PIECE_MISSING = "its last piece is missing"
_ENDS_EARLY = ": ends early"
_KILLED_GUESS = " (writer killed?)"  # the reader's guess at why a file ends inside a chunk
_PROC = Path("/proc")
# The kernel stamps a file's mtime from a coarse clock (a jiffy, up to 10 ms); a process
# that started within that of the last write is still taken for the writer.
_MTIME_SLACK_S = 0.02


@dataclass(frozen=True, slots=True)
class InProgress:
    """A trace file whose writer is alive and whose only fault is a torn end."""

    path: str  # the file (or its embedded stream, named as the loader names it)
    pid: int  # the live writer
    what: str  # what is not whole yet, as the reader said it

    def line(self) -> str:
        """The note a person reads: what is unfinished, and that it is not a problem."""
        return (
            f"{self.path}: being written by pid {self.pid} ({self.what}); "
            "its complete chunks were checked"
        )

    def to_json(self) -> dict[str, object]:
        return {"file": self.path, "pid": self.pid, "detail": self.what}


def find_in_progress(trace: Trace) -> dict[str, InProgress]:
    """The torn files and embedded streams of ``trace`` whose writer is alive on this
    machine, by the path ``trace.files`` / ``trace.unreadable`` name them. Never raises:
    what cannot be checked is not in progress."""
    found: dict[str, InProgress] = {}
    by_id = {str(p.id): p for p in trace.processes}
    by_file = {f: p for p in trace.processes for f in p.files}
    for rep in trace.files:
        if rep.truncated and rep.path not in found:
            live = _writer(rep.path, by_id.get(rep.process_id))
            if live:
                found[rep.path] = InProgress(rep.path, live, _unguessed(rep.truncated))
    for bad in trace.unreadable:
        base, _, _ = bad.path.partition(_EMBEDDED)
        if base != bad.path:
            torn = _stream_cut(bad.path, bad.message, trace.notes)
        else:
            torn = not bad.partial and _torn_start(bad.path)
        if torn:
            live = _writer(base, by_file.get(base))
            if live:
                found[bad.path] = InProgress(bad.path, live, _unguessed(bad.message))
    return found


def _unguessed(message: str) -> str:
    """The reader's message without its guess: the writer was not killed, it is writing."""
    return message.replace(_KILLED_GUESS, "")


def _stream_cut(where: str, message: str, notes: list[str]) -> bool:
    """Did the embedded stream ``where`` fail only because its next piece is missing?"""
    return message.startswith(_LAST_PIECE_MISSING) or any(
        n.startswith(where + _ENDS_EARLY) for n in notes
    )


def _torn_start(path: str) -> bool:
    """Is ``path`` a ``.wtrace`` whose header, or first chunk, was not whole when it was
    read (and nothing else is wrong with it)? The reader refuses such a file whole: there
    was no complete chunk in it. It is looked at again now, so a start that has been
    completed since (the writer went on) counts as torn, once its first chunk verifies.
    Agents name every segment ``*.wtrace``; another file (an empty span export) is not a
    segment being written."""
    if not path.endswith(".wtrace"):
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(FILE_HEADER_SIZE + CHUNK_HEADER_SIZE)
            if len(head) < FILE_HEADER_SIZE:
                return FILE_MAGIC.startswith(head[: len(FILE_MAGIC)])
            major, _ = parse_file_header(head)
            rest = head[FILE_HEADER_SIZE:]
            if major > FORMAT_MAJOR or len(rest) < CHUNK_HEADER_SIZE:
                return major <= FORMAT_MAJOR and CHUNK_MAGIC.startswith(rest[: len(CHUNK_MAGIC)])
            chunk = parse_chunk_header(head, FILE_HEADER_SIZE)
            body = f.read(chunk.stored_len)
            if len(body) == chunk.stored_len:
                unpack_payload(chunk, body)  # whole now: it must verify
    except (OSError, TraceFormatError):
        return False
    return True


def _writer(path: str, process: Process | None) -> int:
    """The pid of the live process writing ``path``, 0 if none is found (see the module
    doc for how the writer is recognised)."""
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        return 0
    if process is not None:
        pid, boot_id = process.pid, process.boot_id
    else:
        name = parse_segment_name(path)
        pid, boot_id = (name.pid if name else 0), ""
    if pid > 0 and _same_boot(boot_id) and _started_before(pid, mtime):
        return pid
    return _holder(path)


def _same_boot(boot_id: str) -> bool:
    """Was the record written on this machine since its last boot (unknown: assume so,
    and let the start time decide)?"""
    if not boot_id:
        return True
    try:
        return (_PROC / "sys/kernel/random/boot_id").read_text().strip() == boot_id
    except OSError:
        return True


def _started_before(pid: int, mtime: float) -> bool:
    """Is ``pid`` a live (not zombie) process that started before wall time ``mtime``?"""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return False
    # The command name (field 2) may hold spaces and parentheses: count after its ")".
    fields = stat.rpartition(")")[2].split()
    if len(fields) < 20 or fields[0] in ("Z", "X", "x"):
        return False
    since_boot_s = int(fields[19]) / os.sysconf("SC_CLK_TCK")
    started = time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - since_boot_s)
    return started <= mtime + _MTIME_SLACK_S


def _holder(path: str) -> int:
    """A process holding ``path`` open for writing, 0 if none can be seen."""
    target = os.path.realpath(path)
    try:
        pids = [e.name for e in os.scandir(_PROC) if e.name.isdigit()]
    except OSError:
        return 0
    for pid in pids:
        fds = _PROC / pid / "fd"
        try:
            entries = list(os.scandir(fds))
        except OSError:
            continue  # gone, or another user's
        for e in entries:
            try:
                if os.readlink(e.path) == target and _writes(fds.parent / "fdinfo" / e.name):
                    return int(pid)
            except OSError:
                continue
    return 0


def _writes(fdinfo: Path) -> bool:
    """Is the descriptor open for writing (O_WRONLY or O_RDWR in its flags)?"""
    for line in fdinfo.read_text().splitlines():
        if line.startswith("flags:"):
            return int(line.split()[1], 8) & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR)
    return False
