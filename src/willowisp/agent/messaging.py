"""Hooks for message brokers, and what they share: how a send and a receive are recorded.

One module per client library (LIBRARIES below) patches that library right after the
program imports it (post_import.when_imported) and calls the helpers here, so every
library records the same shape (docs/format.md, "Message
resources"): a producer injects a fresh child span into the message's headers, defines one
``message`` resource carrying it and writes ``msg.send``; a consumer extracts the context
(W3C ``traceparent``, else B3, else X-Ray), defines one ``message`` resource per message
with ``parent_span_id`` ('' when nothing came) and its own span id, and writes
``msg.recv``. A consumer that waits for messages writes ``unit.block`` (reason message)
on a ``message`` resource naming the destination; the ``msg.recv`` that follows ends it,
or ``unit.wake`` (1: timeout) when the wait returned nothing.

Trade-off: a broker-assigned message id (a Redis stream entry id, a Kafka offset, an SQS
MessageId) is known only after the broker answered, but ``msg.send`` must be written
before the message can be on the wire. The send is recorded first, and the id is added
afterwards by a second record for the same resource, which readers merge attribute by
attribute (docs/format.md, "Records").
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from willowisp.agent import boundaries, context, post_import, rows
from willowisp.agent import recorder as _r
from willowisp.model.spec import K, Reason
from willowisp.wire.b3 import B3_SINGLE
from willowisp.wire.codec import Getter
from willowisp.wire.tracecontext import TRACECONTEXT
from willowisp.wire.traceparent import TraceContext, new_span_id, new_trace_id
from willowisp.wire.xray import XRAY

# The library hooks, in install order; each has install() and uninstall().
LIBRARIES = (
    "msg_redis",
    "msg_redis_async",
    "msg_amqp",
    "msg_aiopika",
    "msg_kafka",
    "msg_kafka_python",
    "msg_aiokafka",
    "msg_sqs",
)

SEND, RECV = int(K.MSG_SEND), int(K.MSG_RECV)
BLOCK, WAKE = int(K.UNIT_BLOCK), int(K.UNIT_WAKE)
WAKE_OK, WAKE_TIMEOUT = 0, 1

_MISSING = object()

# Wait resources by (recorder, protocol, destination): one per destination, not one per
# poll. Changed only by wait_resource; a new recorder (after stop/start or fork) starts over.
_wait_res: dict[tuple[int, str, str], int] = {}


class Patches:
    """The attributes one hook module replaced, to put back latest first."""

    def __init__(self) -> None:
        # (owner, attribute, previous value or _MISSING); appended by set, emptied by undo.
        self.done: list[tuple[Any, str, Any]] = []

    def set(self, owner: Any, attr: str, value: Any) -> Any:
        """Replace (or add) ``owner.attr`` with ``value``; returns what it was (the
        original, None if it had none)."""
        original = getattr(owner, attr, None)
        self.done.append((owner, attr, owner.__dict__.get(attr, _MISSING)))
        setattr(owner, attr, value)
        return original

    def undo(self) -> None:
        while self.done:
            owner, attr, previous = self.done.pop()
            if previous is _MISSING:
                delattr(owner, attr)
            else:
                setattr(owner, attr, previous)


class DeferredHook:
    """One library's hooks: applied now if the program has imported ``module``, else right
    after it does (post_import); ``uninstall`` stops waiting and puts everything back."""

    def __init__(
        self, module: str, patch: Callable[[], None], patches: Patches, where: str
    ) -> None:
        self.module = module
        self.patch = patch
        self.patches = patches
        self.where = where
        self.waits: list[post_import.Waiting] = []

    def install(self) -> None:
        if self.patches.done or self.waits:
            return
        waiting = post_import.when_imported(self.module, self._apply, self.where)
        if waiting is not None:
            self.waits.append(waiting)

    def _apply(self) -> None:
        """All or nothing: a patch that fails half way puts back what it had replaced."""
        try:
            self.patch()
        except BaseException:
            self.patches.undo()
            raise

    def uninstall(self) -> None:
        while self.waits:
            post_import.cancel(self.waits.pop())
        self.patches.undo()


def program_key(library_dir: str | tuple[str, ...]) -> int:
    """The location key of the program's innermost frame outside the standard library, the
    agent and ``library_dir`` (the hooked library's package folder or folders); 0 if there
    is none in the running thread or, in an asyncio task, in the running step (below it is
    the event loop's caller, the ``asyncio.run`` line, which sent nothing)."""
    rec = _r.RECORDER
    if rec is None:
        return 0
    f: FrameType | None = sys._getframe(1)
    while f is not None:
        if f.f_globals.get("__name__") == "asyncio.events":
            return 0
        name = f.f_code.co_filename
        if not (name.startswith(library_dir) or rec.is_internal(name)):
            break
        f = f.f_back
    if f is None:
        return 0
    c = f.f_code
    rows.CODE_IDS[id(c)] = c
    return (id(c) << 16) | (f.f_lasti & 0xFFFF)


def program_key_or_0(library_dir: str | tuple[str, ...], where: str) -> int:
    """``program_key``, with a failure recorded as an agent fault (at ``where``) and 0."""
    try:
        return program_key(library_dir)
    except Exception as exc:
        rec = _r.RECORDER
        if rec is not None:
            rec.fault(where, exc)
        return 0


def package_dir(module: Any) -> str:
    """The folder of a library's package, for program_key."""
    return os.path.dirname(str(getattr(module, "__file__", "") or "")) + os.sep


def outgoing() -> TraceContext:
    """The context to inject into a message about to be sent: a child of the current one."""
    return context.outgoing()


def record_send(
    rec: _r.Recorder,
    key: int,
    *,
    protocol: str,
    library: str,
    destination: str,
    message_id: str,
    ctx: TraceContext | None,
) -> int:
    """Define the message resource of one send and write ``msg.send``; returns its number
    (0 when nothing was recorded: an unsampled message in hops mode).

    ``ctx`` is the context injected into the message, or None when nothing could be (then
    ``span_id`` is '' and the consumer can be linked only by message id).
    """
    cur = ctx if ctx is not None else context.current()
    sampled = cur.sampled if cur is not None else True
    if not sampled and rec.config.mode == "hops":
        return 0
    rid = rec.new_resource(
        "message",
        0,
        name=f"send {destination}",
        key=key,
        trace_id=cur.trace_id if cur is not None else "",
        span_id=ctx.span_id if ctx is not None else "",
        sampled=1 if sampled else 0,
        protocol=protocol,
        library=library,
        destination=destination,
        message_id=message_id,
    )
    st = _r.state()
    rec.emit_for(st, st.unit, SEND, rid, 0, key)
    return rid


def set_message_id(rec: _r.Recorder, rid: int, message_id: str) -> None:
    """Add the broker-assigned ``message_id`` to send resource ``rid`` once it is known.

    A second record for the same resource id, merged by readers. Recorder has no public
    call for this yet, so this appends to its definitions queue directly (same thread
    rules as new_resource: a deque append under the GIL).
    """
    if rid and message_id:
        rec.update_resource(rid, message_id=message_id)


def extract(carriers: Iterable[Getter]) -> TraceContext | None:
    """The context a message carried: W3C first, else B3, else X-Ray, over its carriers."""
    found = list(carriers)
    for carrier in found:
        w3c = TRACECONTEXT.extract(carrier)
        if w3c is not None:
            return w3c.context
    for carrier in found:
        b3 = B3_SINGLE.extract(carrier)
        if b3 is not None and b3.context is not None:
            return b3.context
    for carrier in found:
        xray = XRAY.extract(carrier)
        if xray is not None:
            return xray.context
    return None


def record_recv(
    rec: _r.Recorder,
    key: int,
    *,
    protocol: str,
    library: str,
    destination: str,
    message_id: str,
    carriers: Iterable[Getter],
) -> TraceContext | None:
    """Define the message resource of one received message and write ``msg.recv``.

    Returns the consumer's own context (the extracted trace with a new span id), to make
    current while a callback handles the message; None when nothing was recorded.
    """
    found = list(carriers)
    parent = extract(found)
    trace_id = parent.trace_id if parent is not None else new_trace_id()
    flags = parent.flags if parent is not None else context.root_flags()
    forced: dict[str, Any] = {}
    if boundaries.enter_message(protocol, destination, boundaries.member_of(found)):
        forced = boundaries.forced_attrs(flags)
        flags |= 1  # a declared boundary is recorded whatever the trace ratio
    own = TraceContext(trace_id, new_span_id(), flags)
    if not flags & 1 and rec.config.mode == "hops":
        return own
    rid = rec.new_resource(
        "message",
        0,
        name=f"recv {destination}",
        key=key,
        trace_id=trace_id,
        span_id=own.span_id,
        parent_span_id=parent.span_id if parent is not None else "",
        sampled=flags & 1,
        protocol=protocol,
        library=library,
        destination=destination,
        message_id=message_id,
        **forced,
    )
    st = _r.state()
    rec.emit_for(st, st.unit, RECV, rid, 0, key)
    return own


def wait_resource(rec: _r.Recorder, key: int, protocol: str, library: str, dest: str) -> int:
    """The ``message`` resource a consumer waits on for ``dest`` (one per destination)."""
    k = (id(rec), protocol, dest)
    rid = _wait_res.get(k)
    if rid is None:
        if len(_wait_res) > 4096:  # destinations are few; bound it against generated names
            _wait_res.clear()
        rid = _wait_res[k] = rec.new_resource(
            "message",
            0,
            name=f"wait {dest}",
            key=key,
            protocol=protocol,
            library=library,
            destination=dest,
        )
    return rid


def record_block(rec: _r.Recorder, key: int, protocol: str, library: str, dest: str) -> int:
    """Write ``unit.block`` (reason message) on ``dest``'s wait resource; returns it."""
    rid = wait_resource(rec, key, protocol, library, dest)
    st = _r.state()
    rec.emit_for(st, st.unit, BLOCK, rid, int(Reason.MESSAGE), key)
    return rid


def record_wake(rec: _r.Recorder, rid: int, outcome: int, key: int) -> None:
    """End a wait that no ``msg.recv`` ended (``outcome``: spec.Outcome, WAKE_OK or
    WAKE_TIMEOUT). Never raises (hooks call it while an exception of the program's is on its
    way out): a failure is an agent.fault."""
    try:
        st = _r.state()
        rec.emit_for(st, st.unit, WAKE, rid, outcome, key)
    except Exception as exc:
        rec.fault("message wait", exc)


def text(value: Any) -> str:
    """A name or id from the wire as text (bytes decoded as UTF-8, others by str)."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def install() -> None:
    """Install each library's hook (each waits for its library's import). A hook that fails
    to install is an agent.fault; the others still go in."""
    for name in LIBRARIES:
        try:
            importlib.import_module(f"willowisp.agent.{name}").install()
        except Exception as exc:
            rec = _r.RECORDER
            if rec is not None:
                rec.fault(f"install {name}", exc)


def uninstall() -> None:
    """Put back every library's hooks."""
    for name in reversed(LIBRARIES):
        module = sys.modules.get(f"willowisp.agent.{name}")
        if module is not None:
            module.uninstall()
