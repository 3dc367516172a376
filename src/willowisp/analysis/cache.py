"""The results cache: an analysis document kept beside the run it was computed from.

A second ``analyze`` (or ``query ... findings``) of the same inputs with the same options
reads the document back instead of loading, linking and analysing again: on a
1,000,000-event run that is a few milliseconds instead of seconds.

**Where.** ``<folder>/.wisp-cache/`` where ``<folder>`` is the first PATH if it is a run
folder, else the folder holding the first PATH (a trace file). The folder must already be
writable by us; nothing is ever written anywhere else (never the working directory unless
the trace file is there). The cache folder and every entry must be ours (``lstat``: a real
folder, not a link, owned by this user; entries regular files owned by this user): in a
shared folder someone else's planted entry could otherwise be served as our results.

**Key.** SHA-256 over: every input file's path, size, ``mtime_ns`` and a hash of its first
and last 64 KiB (which hold the file header, the first chunks and the last chunk's header);
the inputs that could not be found; the analysis options (their ``repr``: a frozen
dataclass, so every field counts, including ones added later); the package version and a
fingerprint of the package's own source files (path, size, mtime), so an edited analyzer
never serves results an older one computed. An entry also stores its full key and is used
only if that matches. Inputs that change — appended, rewritten, truncated, replaced —
change size, mtime or the hashed ends, so a stale document is never served; only a file
rewritten in place to the same size within the same mtime tick, with its first and last
64 KiB unchanged, would slip through.

**Entry.** ``<key>.json.zst``: zstd-compressed JSON ``{"cache": FORMAT, "key": ...,
"document": ...}``. JSON only: no pickle, nothing that could run code on load. Written to
a temporary file and renamed, so a reader never sees half an entry. The newest
:data:`KEEP` entries are kept (a hit refreshes an entry's mtime), older ones removed.

**Failure.** Every cache problem (an unwritable folder, a corrupt or foreign entry, a full
disk) means "no cache": the caller computes as if there were none. Callers keep their
output byte-identical either way.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import stat
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

import willowisp
from willowisp.ingest.files import discover

FORMAT = "willowisp.cache/1"
FOLDER = ".wisp-cache"
SUFFIX = ".json.zst"
KEEP = 4  # entries kept per cache folder, newest first
EDGE_BYTES = 64 * 1024  # bytes hashed at each end of every input file
MAX_ENTRY_BYTES = 512 * 1024 * 1024  # bound on a decompressed entry (a corrupt frame)


@dataclass(frozen=True, slots=True)
class Slot:
    """Where one result would be cached (``folder`` None: it cannot be), and its key."""

    folder: str | None
    key: str
    # What the key was computed from, to check at store time that it still holds.
    paths: tuple[str, ...]
    options: str
    kind: str

    @property
    def path(self) -> str | None:
        return None if self.folder is None else os.path.join(self.folder, self.key + SUFFIX)


def slot(paths: Iterable[str | os.PathLike[str]], options: object, kind: str) -> Slot:
    """The slot of ``kind`` (what is cached, e.g. "analysis") for these inputs and options.

    Reads the ends of every input file (for the key) but never writes. Never raises for a
    bad input: an unreadable file makes the key differ, and loading reports it as usual.
    """
    names = tuple(os.fspath(p) for p in paths)
    text = repr(options)
    return Slot(_folder_for(names), _key(names, text, kind), names, text, kind)


def _key(paths: tuple[str, ...], options: str, kind: str) -> str:
    files, missing = discover(paths)
    h = hashlib.sha256()
    h.update(f"{FORMAT}\n{kind}\n{willowisp.__version__}\n{_code_fingerprint()}\n".encode())
    # The paths as given too: the document names files the way the command line did.
    h.update(f"{options}\n{paths!r}\n".encode())
    for u in missing:
        h.update(f"missing {u.path}\n".encode())
    for f in files:
        h.update(f"{f}\n{_file_key(f)}".encode())
    return h.hexdigest()


def load(where: Slot) -> dict[str, Any] | None:
    """The cached document, or None (no entry, or any problem with it)."""
    path = where.path
    if path is None or where.folder is None or not _ours(where.folder, folder=True):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = _decompress(f.read())
        entry = json.loads(raw)
        if (
            not isinstance(entry, dict)
            or entry.get("cache") != FORMAT
            or entry.get("key") != where.key
            or not isinstance(entry.get("document"), dict)
        ):
            return None
        with contextlib.suppress(OSError):  # a read-only folder still serves its entries
            os.utime(fd)  # a hit counts as recent use (KEEP keeps the newest)
        document: dict[str, Any] = entry["document"]
        return document
    except Exception:  # any damage is a miss: the caller recomputes
        return None
    finally:
        os.close(fd)


def store(where: Slot, document: dict[str, Any]) -> bool:
    """Keep ``document`` in the slot; True if it was written. Never raises.

    Call it after computing ``document`` from the inputs: if they changed since ``where``
    was taken (a run still being written), the document may describe newer contents than
    the key, so nothing is stored.
    """
    if where.folder is None:
        return False
    try:
        if _key(where.paths, where.options, where.kind) != where.key:
            return False
        folder = where.folder
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            pass
        if not _ours(folder, folder=True):
            return False
        data = json.dumps(
            {"cache": FORMAT, "key": where.key, "document": document},
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode("utf-8")
        packed = zstandard.ZstdCompressor(level=3).compress(data)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=SUFFIX, dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(packed)
            os.replace(tmp, os.path.join(folder, where.key + SUFFIX))
        except BaseException:
            os.unlink(tmp)
            raise
        _prune(folder)
        return True
    except Exception:  # an unwritable or full folder only means no cache
        return False


# -- the key --------------------------------------------------------------------------


def _file_key(path: str) -> str:
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            head = f.read(EDGE_BYTES)
            if st.st_size > EDGE_BYTES:
                f.seek(max(EDGE_BYTES, st.st_size - EDGE_BYTES))
                tail = f.read(EDGE_BYTES)
            else:
                tail = b""
    except OSError as exc:
        return f"file {os.path.abspath(path)} unreadable {exc.errno}\n"
    ends = hashlib.sha256(head + b"\0" + tail).hexdigest()
    return f"file {os.path.abspath(path)} {st.st_size} {st.st_mtime_ns} {st.st_ino} {ends}\n"


_fingerprint: str | None = None


def _code_fingerprint() -> str:
    """A hash of the package's source files' names, sizes and mtimes (once per process)."""
    global _fingerprint
    if _fingerprint is None:
        root = Path(willowisp.__file__).parent
        h = hashlib.sha256()
        for p in sorted(root.rglob("*.py")):
            try:
                st = p.stat()
            except OSError:
                continue
            h.update(f"{p.relative_to(root)} {st.st_size} {st.st_mtime_ns}\n".encode())
        _fingerprint = h.hexdigest()
    return _fingerprint


# -- the folder -----------------------------------------------------------------------


def _folder_for(paths: tuple[str, ...]) -> str | None:
    """``.wisp-cache`` beside the first existing PATH, if we may write there."""
    for p in paths:
        if os.path.isdir(p):
            base = p
        elif os.path.isfile(p):
            base = os.path.dirname(os.path.abspath(p))
        else:
            continue
        folder = os.path.join(base, FOLDER)
        if os.path.lexists(folder):
            return folder if _ours(folder, folder=True) else None
        return folder if os.access(base, os.W_OK | os.X_OK) else None
    return None


def _ours(path: str, *, folder: bool) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    kind_ok = stat.S_ISDIR(st.st_mode) if folder else stat.S_ISREG(st.st_mode)
    return kind_ok and st.st_uid == os.geteuid()


def _decompress(data: bytes) -> bytes:
    """Decompress an entry, refusing more than MAX_ENTRY_BYTES (whatever its frame says)."""
    out = bytearray()
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)) as reader:
        while block := reader.read(1 << 20):
            out += block
            if len(out) > MAX_ENTRY_BYTES:
                raise ValueError("cache entry too large")
    return bytes(out)


def _prune(folder: str) -> None:
    """Keep the KEEP newest entries; remove temporary files a crashed writer left (a day)."""
    entries: list[tuple[int, str]] = []
    abandoned: list[str] = []
    day_ago = time.time_ns() - 86_400 * 10**9
    with os.scandir(folder) as it:
        for e in it:
            if not (e.name.endswith(SUFFIX) and e.is_file(follow_symlinks=False)):
                continue
            mtime = e.stat(follow_symlinks=False).st_mtime_ns
            if not e.name.startswith(".tmp-"):
                entries.append((mtime, e.path))
            elif mtime < day_ago:
                abandoned.append(e.path)
    entries.sort(reverse=True)
    for p in [p for _, p in entries[KEEP:]] + abandoned:
        try:
            os.unlink(p)
        except OSError:
            pass
