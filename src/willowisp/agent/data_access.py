"""What every data hook shares: naming shared data, recording one access, and the locks of
stores that serialize writes.

A piece of shared data is a ``data`` resource; its ``name`` is what two accesses must share
to conflict (docs/format.md, "Data accesses"): ``sqlite:/srv/shop.db#stock[id=k…]``,
``file:/tmp/out.csv``, ``redis:cart:42``, ``http:host:port/path``, or the name a program
gives ``willowisp.access``. The agent defines one resource per (name, statement, store)
the first time it sees it and reuses it, so a hot loop over one row costs one event per
access, no new record. The cache is bounded: past ``MAX_CACHED`` entries it starts over
(a resource defined twice is harmless: the analysis groups accesses by name).

A store that runs one write at a time (SQLite's write lock, a Redis key's single-threaded
command) is a ``lock`` resource with ``shared=1``, named for what it locks: holding it
around the write (or the transaction) is what orders two processes' writes in the
analysis (causality/shared_locks.py).

Privacy: names and statements are shapes. Row keys are values, so by default they are
kept as a short keyed hash (``k`` + 10 hex digits of BLAKE2b keyed by the run's folder):
equal values give equal keys within a run, and a key cannot be looked up outside it;
``--redact sql-values`` keeps the value itself. Redis keys and file paths are kept as
written (cut to ``MAX_NAME`` characters): they are the identifiers programs use.

Data accesses are recorded in ``full`` mode only. ``hops`` mode records concurrency only
inside declared boundaries, and what orders two boundary instances (the client that sent
one request after the other's reply) is outside them: every access there would look
concurrent with every other.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from willowisp.agent import recorder as _r
from willowisp.agent import redact
from willowisp.model.spec import K

READ, WRITE = 0, 1
MAX_NAME = 200  # characters of a key, path or user name kept
MAX_CACHED = 100_000  # resources remembered per process before the cache starts over

ACCESS = int(K.DATA_ACCESS)
ACQUIRED, RELEASE = int(K.LOCK_ACQUIRED), int(K.LOCK_RELEASE)

# (recorder id, name, statement, store) -> resource number. Changed only by ``resource``
# and ``shared_lock``; a new recorder (stop/start, fork) starts with fresh numbers.
_cache: dict[tuple[int, str, str, str], int] = {}
_salt: dict[int, bytes] = {}  # recorder id -> the row hash key


def enabled(rec: _r.Recorder) -> bool:
    """Are data accesses recorded in this process? In ``full`` mode only: a race is the
    absence of order, and ``hops`` mode does not record most of what orders things."""
    return rec.config.mode == "full"


def resource(
    rec: _r.Recorder,
    name: str,
    *,
    store: str,
    statement: str = "",
    key: int = 0,
    **attrs: Any,
) -> int:
    """The data resource for ``name`` (defined at location ``key`` the first time)."""
    ck = (id(rec), name, statement, store)
    rid = _cache.get(ck)
    if rid is None:
        if len(_cache) >= MAX_CACHED:
            _cache.clear()
        rid = rec.new_resource(
            "data", 0, name=name, key=key or -1, store=store, statement=statement, **attrs
        )
        _cache[ck] = rid
    return rid


def shared_lock(rec: _r.Recorder, name: str, key: int = 0) -> int:
    """The ``shared=1`` lock resource of a store's write lock, by name."""
    ck = (id(rec), name, "", "lock")
    rid = _cache.get(ck)
    if rid is None:
        if len(_cache) >= MAX_CACHED:
            _cache.clear()
        rid = rec.new_resource("lock", 0, name=name, key=key or -1, shared=1)
        _cache[ck] = rid
    return rid


def emit(rec: _r.Recorder, kind: int, rid: int, arg: int, key: int) -> None:
    """One event of the current unit at location ``key``."""
    st = _r.state()
    rec.emit_for(st, st.unit, kind, rid, arg, key)


def access(rec: _r.Recorder, rid: int, mode: int, key: int) -> None:
    emit(rec, ACCESS, rid, mode, key)


def atomic_write(rec: _r.Recorder, lock: int, rid: int, key: int) -> None:
    """A write the store makes atomic on its own (an autocommit statement, one Redis
    command): a hold of its lock around the access."""
    emit(rec, ACQUIRED, lock, 0, key)
    emit(rec, ACCESS, rid, WRITE, key)
    emit(rec, RELEASE, lock, 0, key)


def row_key(rec: _r.Recorder, column: str, value: Any) -> str:
    """``column=k…`` (a keyed hash of the value), or ``column=value`` when redaction keeps
    SQL values."""
    if isinstance(value, bytes | bytearray | memoryview):
        text = bytes(value).hex()
    elif value is None:
        text = "NULL"
    else:
        text = str(value)
    if redact.ACTIVE.sql_values:
        return f"{column}={text[:MAX_NAME]}"
    salt = _salt.get(id(rec))
    if salt is None:
        out = os.path.abspath(rec.config.out or ".")
        salt = _salt[id(rec)] = hashlib.sha256(b"willowisp rows\0" + out.encode()).digest()[:16]
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), key=salt, digest_size=5)
    return f"{column}=k{digest.hexdigest()}"


def cut(text: str) -> str:
    return text if len(text) <= MAX_NAME else text[:MAX_NAME]


# --- HTTP: a request is an access to the resource its URL names --------------------------

HTTP_MODES = {"GET": READ, "HEAD": READ, "PUT": WRITE, "POST": WRITE, "DELETE": WRITE}
HTTP_MODES["PATCH"] = WRITE


def http_request(rec: _r.Recorder, method: str, host: str, path: str, key: int) -> None:
    """A server received ``method`` on ``path`` (query values already elided): a read
    (GET, HEAD) or write (PUT, POST, PATCH, DELETE) of ``http:host/path``. Other methods
    are no access."""
    mode = HTTP_MODES.get(method)
    if mode is None or not enabled(rec):
        return
    bare = path.split("?", 1)[0] or "/"
    rid = resource(
        rec, cut(f"http:{host}{bare}"), store="http", statement=f"{method} {bare}", key=key
    )
    access(rec, rid, mode, key)
