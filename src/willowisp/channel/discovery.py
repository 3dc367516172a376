"""The per-user runtime folder, where agents leave their control sockets and descriptors.

``docs/protocols.md`` ("Discovery"): ``$WILLOWISP_RUNTIME_DIR``, else ``/tmp/willowisp-<uid>``,
mode 0700 and ours. An agent creates it and writes a descriptor there; ``willowisp ctl``
checks it the same way before trusting a token or a socket found in it.

Trade-off: a fixed, guessable folder under /tmp is what lets ``ctl PID`` find a process
with no configuration; the price is that someone else may create it first, so every user
of it checks ownership and mode with ``lstat`` and refuses rather than repairs.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from typing import Any


def runtime_dir() -> str:
    """Where descriptors and sockets live: WILLOWISP_RUNTIME_DIR, else /tmp/willowisp-<uid>."""
    return os.environ.get("WILLOWISP_RUNTIME_DIR") or f"/tmp/willowisp-{os.getuid()}"  # noqa: S108


def check_private_dir(path: str, *, create: bool) -> None:
    """Make sure ``path`` is a real folder of ours that nobody else can enter (0700).

    A folder in /tmp that someone else made first, or a symlink, would let them read tokens
    or plant sockets: refuse it (OSError) rather than use it.
    """
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(errno.ENOTDIR, f"{path} is not a folder (a symlink?)")
    if st.st_uid != os.getuid():
        raise OSError(errno.EPERM, f"{path} belongs to uid {st.st_uid}, not {os.getuid()}")
    if st.st_mode & 0o077:
        raise OSError(errno.EPERM, f"{path} has mode {stat.S_IMODE(st.st_mode):o}, not 700")


def write_private_json(path: str, obj: dict[str, Any]) -> None:
    """Write ``obj`` to ``path`` (mode 0600) atomically: a reader sees all of it or none.
    Raises OSError."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(tmp, flags, 0o600)
    try:
        data = json.dumps(obj, indent=1, sort_keys=True).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    os.replace(tmp, path)
