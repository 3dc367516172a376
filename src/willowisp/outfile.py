"""Writing an output file the user named: atomically when it is (or will be) a regular file,
straight into it when it is a device, a FIFO or a socket.

Commands write their outputs through a temporary file renamed over the target, so a reader
never sees half a file and an old file survives a failed write. Renamed over ``/dev/null``
(``export ... -o /dev/null`` to try a command) that would replace the device with a
regular file — as root, for every program on the machine. A target that exists and is not
a regular file is therefore opened and written like any program writes to it.
"""

from __future__ import annotations

import os
import stat


def is_special(path: str | os.PathLike[str]) -> bool:
    """Does ``path`` exist as something other than a regular file or a folder (a character
    device such as /dev/null or /dev/stdout, a FIFO, a socket)? Symlinks are followed."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def write_special(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` into the special file ``path`` as it is (no temporary file)."""
    with open(path, "wb") as fh:
        fh.write(data)
