"""Room kept for the news of a full disk.

When the file system refuses the agent's chunks, the chunk that says what was lost (drop
events, the ``write`` fault, the stats) must still get written, or ``analyze`` would show a
clean trace built on missing events. So the agent keeps a small file in the run folder
(``.willowisp-reserve-<pid>``, its blocks really allocated) and deletes it at the first
refusal, just before writing that news. It is deleted at exit too; ``willowisp run``
removes the one a killed process left behind (cli/run.py).
"""

from __future__ import annotations

import contextlib
import os

from willowisp.agent.config import RESERVE_PREFIX

RESERVE_BYTES = 64 * 1024


def make(folder: str) -> str:
    """The reserve's path, or '' when none can be made (no room even for it, no fallocate)."""
    path = os.path.join(folder, f"{RESERVE_PREFIX}{os.getpid()}")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    except OSError:
        return ""
    try:
        os.posix_fallocate(fd, 0, RESERVE_BYTES)
        return path
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(path)
        return ""
    finally:
        os.close(fd)


def drop(path: str) -> bool:
    """Give the room back; True when there was a reserve to give."""
    if not path:
        return False
    try:
        os.unlink(path)
    except OSError:
        return False
    return True
