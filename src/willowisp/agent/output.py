"""Where the Python agent's chunks go: this process's segment files in the run folder
(``<service>-<pid>-<process id prefix>-<n>.wtrace``, a new one past SEGMENT_BYTES), or the
native stream to a collector (agent/stream.py, which falls back to those files), and the
room kept for the news of a full disk (agent/reserve.py).

The recorder builds each chunk and counts what a refused one lost (its events per unit,
its definitions carried to the next chunk: recorder._write_refused); this module only
opens, writes, notes a refusal (the first of a spell is the recorder's one ``write``
fault) and, at the end, says on stderr how many events the file system refused.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from willowisp.agent import reserve
from willowisp.agent.config import AgentConfig
from willowisp.wtrace.framing import default_codec
from willowisp.wtrace.writer import SegmentWriter

SEGMENT_BYTES = 256 * 1024 * 1024


class Output:
    def __init__(self, config: AgentConfig, process_id: str, on_fault: Callable[[], int]) -> None:
        """``on_fault``: counts a fault the stream writer records itself; returns its id."""
        self.config = config
        self.process_id = process_id
        self._on_fault = on_fault
        self.segment = 0
        self.writer: Any = None  # a SegmentWriter or a StreamWriter once open()
        self.path = ""
        self.reserve = ""  # the reserve file's path while it exists
        self.lost_on_write = 0  # events in chunks the file system refused (a full disk)
        self.write_error = ""  # set while writes are refused
        self.refusal = ""  # the last refusal's reason, for the line at exit

    def open(self) -> bool:
        """Start the next segment (the first: after making the reserve). False when a later
        one cannot be made (a full disk: the current one goes on); raises when not even the
        first can (the agent cannot start)."""
        cfg = self.config
        os.makedirs(cfg.out, exist_ok=True)
        self.segment += 1
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", cfg.service)[:40] or "python"
        name = f"{safe}-{os.getpid()}-{self.process_id[:8]}-{self.segment}.wtrace"
        old = self.writer
        path = os.path.join(cfg.out, name)
        if cfg.collector:  # the native stream (docs/protocols.md); it falls back to `path`
            from willowisp.agent.stream import StreamWriter

            hello: dict[str, Any] = {
                "process_id": self.process_id,
                "service": cfg.service,
                "pid": os.getpid(),
                "runtime": "python",
                "segment": self.segment,
            }
            writer: Any = StreamWriter(
                cfg.collector,
                cfg.token,
                path,
                default_codec(),
                hello=hello,
                on_fault=lambda where, message: self._on_fault(),
                retry_max_s=cfg.stream_retry_s,
            )
        else:
            if old is None:
                self.reserve = reserve.make(cfg.out)
            try:
                writer = SegmentWriter(path, default_codec())
            except OSError:
                if old is None:
                    raise
                self.segment -= 1
                return False
        if old is not None:
            old.close()
        self.writer = writer
        self.path = path
        return True

    def full(self) -> bool:
        """Is the current segment past its size (the next chunk goes to a new one)?"""
        return self.writer is not None and self.writer.size > SEGMENT_BYTES

    def written(self) -> None:
        """A chunk went out: a spell of refused writes is over."""
        self.write_error = ""

    def refused(self, exc: OSError, events: int) -> bool:
        """A chunk of ``events`` events the file system refused; True for the first of a
        spell of refusals (the recorder's one ``write`` fault)."""
        self.lost_on_write += events
        if self.write_error:
            return False
        self.write_error = self.refusal = exc.strerror or repr(exc)
        return True

    def drop_reserve(self) -> bool:
        """Give the reserve's room back; True when there was one (the news goes there)."""
        path, self.reserve = self.reserve, ""
        return reserve.drop(path)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        self.drop_reserve()
        if self.lost_on_write:
            self.say_lost()

    def say_lost(self) -> None:
        """The one line a full disk costs the program's stderr: nothing is lost silently,
        and when the disk stayed full there is nowhere else to say it."""
        path = self.path or self.config.out
        with contextlib.suppress(Exception):
            sys.stderr.write(
                f"willowisp: {self.lost_on_write} events of {self.config.service} "
                f"(pid {os.getpid()}) could not be written to {path}: {self.refusal}\n"
            )
