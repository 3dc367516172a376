"""Hooks for grpcio: clients and servers, sync (``grpc``) and asyncio (``grpc.aio``).

Through grpc's own extension points, not its internals: every channel the program creates
(``grpc.insecure_channel`` / ``secure_channel``, ``grpc.aio.insecure_channel`` /
``secure_channel``) gets one client interceptor of ours, innermost, so it sees the metadata
the program's own interceptors added; every server (``grpc.server``, ``grpc.aio.server``)
gets one server interceptor, innermost, which wraps the handler's behaviour.

Client: the interceptor continues the current trace with a new span id and injects
``traceparent`` into the call's metadata, unless the metadata already carries a context
(W3C, B3 or X-Ray, set by the program or another tracer), which is then recorded as is. It
defines one ``rpc`` resource per call and writes ``msg.send``; a blocking call writes
``unit.block`` (reason rpc) and then ``rpc.response`` with the gRPC status code (0 ok, -1
when the call raised before any status). Server: the wrapped behaviour extracts the context
(W3C, else B3, else X-Ray), defines the server-side ``rpc`` resource, writes ``msg.recv``,
makes the context current while the behaviour runs (so its own calls continue the trace)
and writes ``rpc.reply`` with the status it ends with. The analyzer pairs the two sides by
the span id that crossed the wire.

``grpc.aio`` runs a call's interceptors in a task it creates for the call, whose stack
holds no line of the program. The one place grpc's internals are touched: the four
``grpc.aio`` multicallables' ``__call__`` notes the program's calling line in a context
variable that the call's task inherits, so the client's events are located there. The aio
unary-unary wait is kept open across grpc's own events by task_waits.drive. Client events
carry the program's calling line, server events the handler's definition.

Trade-off: a blocking sync call is told from ``.future()`` and the streaming kinds by the
name of the continuation grpc hands the interceptor (``_with_call``), grpc's layout since
1.x; a call that is not blocking records its ``rpc.response`` from grpc's done callback, on
the thread that runs it, and no wait. Only shapes are kept: method path, peer, status.

The agent does not import grpc; the hooks go in right after the program first does.
"""

from __future__ import annotations

import contextvars
import inspect
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from types import SimpleNamespace
from typing import Any

from willowisp.agent import boundaries, context, post_import, redact, rows, task_waits
from willowisp.agent import recorder as _r
from willowisp.agent.http_propagation import entry_headers_json
from willowisp.model.spec import K, Reason
from willowisp.wire.b3 import B3_SINGLE
from willowisp.wire.carriers import GrpcMetadata
from willowisp.wire.tracecontext import TRACECONTEXT
from willowisp.wire.traceparent import TraceContext, new_span_id, new_trace_id
from willowisp.wire.xray import XRAY

NO_STATUS = -1  # the rpc.response / rpc.reply arg when the call ended without a status
UNKNOWN = 2  # grpc.StatusCode.UNKNOWN: a handler that raised without setting a code

# The functions replaced, as (module, attribute, original). Changed by install/uninstall.
_patched: list[tuple[Any, str, Any]] = []
_orig: dict[str, Any] = {}  # originals by attribute name; kept by uninstall for calls in flight
_waits: list[post_import.Waiting] = []
# The interceptor classes, built once grpc is imported (their bases are grpc's ABCs).
_classes: dict[str, type] = {}
_GRPC_DIR = ""  # grpc's package folder: its frames are skipped when locating an event
# The program's line that made the ``grpc.aio`` call being started, set by the multicallable's
# ``__call__`` around its body: grpc runs the interceptors in a task it creates there, which
# copies this context, so the interceptor finds the caller's line that its own stack lacks.
_call_site: contextvars.ContextVar[int] = contextvars.ContextVar("wisp_grpc_call", default=0)
_AIO_CALLABLES = ("UnaryUnary", "UnaryStream", "StreamUnary", "StreamStream")


def _extract(pairs: list[tuple[Any, Any]]) -> TraceContext | None:
    """The context in gRPC metadata: W3C, else B3, else X-Ray, else None."""
    carrier = GrpcMetadata(pairs)
    w3c = TRACECONTEXT.extract(carrier)
    if w3c is not None:
        return w3c.context
    b3 = B3_SINGLE.extract(carrier)
    if b3 is not None and b3.context is not None:
        return b3.context
    xray = XRAY.extract(carrier)
    return xray.context if xray is not None else None


def _status(code: Any) -> int:
    """A ``grpc.StatusCode`` (or its int) as the int on the wire; NO_STATUS for None."""
    if code is None:
        return NO_STATUS
    if isinstance(code, int):
        return code
    value = getattr(code, "value", None)
    if isinstance(value, tuple) and value and isinstance(value[0], int):
        return value[0]
    return NO_STATUS


def _program_key(rec: _r.Recorder) -> int:
    """The location key of the program's innermost frame outside the stdlib, us and grpc;
    0 if there is none in the running thread or, in an asyncio task, in the running step
    (below it is the event loop's caller, the ``asyncio.run`` line, which made no call)."""
    f = sys._getframe(1)
    while f is not None:
        if f.f_globals.get("__name__") == "asyncio.events":
            return 0
        name = f.f_code.co_filename
        if not rec.is_internal(name) and not (_GRPC_DIR and name.startswith(_GRPC_DIR)):
            c = f.f_code
            rows.CODE_IDS[id(c)] = c
            return (id(c) << 16) | (f.f_lasti & 0xFFFF)
        f = f.f_back  # type: ignore[assignment]
    return 0


def _pairs(metadata: Any) -> list[tuple[Any, Any]]:
    return [(k, v) for k, v in metadata] if metadata else []


def _with_metadata(details: Any, metadata: Any) -> Any:
    """``details`` with its metadata replaced (grpc's own details are namedtuples)."""
    try:
        return details._replace(metadata=metadata)
    except (AttributeError, ValueError, TypeError):
        names = ("method", "timeout", "credentials", "wait_for_ready", "compression")
        attrs = {n: getattr(details, n) for n in names if hasattr(details, n)}
        return SimpleNamespace(metadata=metadata, **attrs)


def _begin_client(
    rec: _r.Recorder, details: Any, peer: str, library: str, aio: bool, key: int = 0
) -> tuple[int, Any, int]:
    """Inject the context and define the call's resource; write ``msg.send`` at ``key``
    (0: the program's innermost frame on this stack).

    Returns (resource or 0 when not recorded, the details to call with, location key)."""
    method = details.method
    if isinstance(method, bytes):
        method = method.decode("utf-8", "replace")
    pairs = _pairs(details.metadata)
    ctx = _extract(pairs)
    if ctx is None:
        ctx = context.outgoing()
        TRACECONTEXT.inject(boundaries.w3c(ctx), GrpcMetadata(pairs))
        grpc = sys.modules["grpc"]
        new = grpc.aio.Metadata(*pairs) if aio else tuple(pairs)
        details = _with_metadata(details, new)
    if not ctx.sampled and rec.config.mode == "hops":
        return 0, details, 0  # always-on mode records sampled calls only; the flag travels
    key = key or _program_key(rec)
    rid = rec.new_resource(
        "rpc",
        0,
        name=str(method),
        key=key,
        trace_id=ctx.trace_id,
        span_id=ctx.span_id,
        sampled=1 if ctx.sampled else 0,
        protocol="grpc",
        library=library,
        method=str(method),
        target=str(method),
        peer=peer,
    )
    st = _r.state()
    rec.emit_for(st, st.unit, int(K.MSG_SEND), rid, 0, key)
    return rid, details, key


def _emit(kind: K, rid: int, arg: int, key: int = 0) -> None:
    rec = _r.RECORDER
    if rec is not None:
        st = _r.state()
        rec.emit_for(st, st.unit, int(kind), rid, arg, key)


def _respond_when_done(rid: int, call: Any, aio: bool, key: int) -> None:
    """Write ``rpc.response`` from grpc's done callback (calls that do not block), located
    at ``key``, the program's line that made the call."""

    def done(c: Any) -> None:
        try:
            status = _aio_status_now(c) if aio else _status(c.code())
            _emit(K.RPC_RESPONSE, rid, status, key)
        except Exception as exc:
            rec = _r.RECORDER
            if rec is not None:
                rec.fault("grpc client done", exc)

    call.add_done_callback(done)


def _aio_status_now(call: Any) -> int:
    """The status of a finished ``grpc.aio`` call, read without awaiting (its ``code()``
    coroutine completes without suspending once the call is done)."""
    coro = call.code()
    try:
        coro.send(None)
    except StopIteration as stop:
        return _status(stop.value)
    coro.close()
    return NO_STATUS


class _ClientHooks:
    """The sync client interceptor's behaviour; the class grpc sees adds its four ABCs."""

    library = "grpcio"

    def __init__(self, peer: str) -> None:
        self.peer = peer  # the channel's target, as the program gave it

    def _intercept(self, continuation: Callable[[Any, Any], Any], details: Any, req: Any) -> Any:
        rec = _r.RECORDER
        rid = key = 0
        blocking = "._with_call." in getattr(continuation, "__qualname__", "")
        if rec is not None:
            try:
                rid, details, key = _begin_client(rec, details, self.peer, self.library, False)
                if rid and blocking:
                    rec.emit_for(
                        _r.state(), _r.state().unit, int(K.UNIT_BLOCK), rid, Reason.RPC, key
                    )
            except Exception as exc:
                rec.fault("grpc client", exc)
        if not rid:
            return continuation(details, req)
        try:
            call = continuation(details, req)
        except BaseException:
            _emit(K.RPC_RESPONSE, rid, NO_STATUS, key)
            raise
        try:
            if blocking:
                _emit(K.RPC_RESPONSE, rid, _status(call.code()), key)
            else:
                _respond_when_done(rid, call, False, key)
        except Exception as exc:
            if rec is not None:
                rec.fault("grpc client response", exc)
        return call

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return self._intercept(continuation, details, request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return self._intercept(continuation, details, request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return self._intercept(continuation, details, requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return self._intercept(continuation, details, requests)


class _AioClientHooks:
    """The ``grpc.aio`` client interceptor's behaviour. grpc runs each intercepted call in a
    task of its own, which the caller's task awaits: the wait is recorded in that task, and
    located, like the send, at the program's line that made the call (``_call_site``)."""

    library = "grpcio.aio"

    def __init__(self, peer: str) -> None:
        self.peer = peer

    async def _intercept(self, continuation: Any, details: Any, req: Any, wait: bool) -> Any:
        rec = _r.RECORDER
        rid = key = 0
        if rec is not None:
            try:
                rid, details, key = _begin_client(
                    rec, details, self.peer, self.library, True, _call_site.get()
                )
            except Exception as exc:
                rec.fault("grpc.aio client", exc)
        if not rid:
            return await continuation(details, req)
        try:
            call = await continuation(details, req)
            if not wait:
                _respond_when_done(rid, call, True, key)
                return call
            code = await task_waits.drive(call.code(), rid, int(Reason.RPC), key)
        except BaseException:
            _emit(K.RPC_RESPONSE, rid, NO_STATUS, key)
            raise
        _emit(K.RPC_RESPONSE, rid, _status(code), key)
        return call

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await self._intercept(continuation, details, request, True)

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await self._intercept(continuation, details, request, False)

    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        # Not awaited here: the program may still have to write the requests (call.write).
        return await self._intercept(continuation, details, requests, False)

    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await self._intercept(continuation, details, requests, False)


# --- server -------------------------------------------------------------------------------


class _ServerCall:
    """One inbound call: its resource, its context, and the reply written once."""

    __slots__ = ("bnd", "key", "rid", "token")

    def __init__(self, hcd: Any, behavior: Any, servicer_context: Any, library: str) -> None:
        self.rid = 0
        self.token: Any = None
        self.bnd: Any = None
        self.key = 0
        rec = _r.RECORDER
        if rec is None:
            return
        try:
            pairs = _pairs(hcd.invocation_metadata)
            parent = _extract(pairs)
            own = new_span_id()
            trace_id = parent.trace_id if parent else new_trace_id()
            flags = parent.flags if parent else context.root_flags()
            method = str(hcd.method)
            member = boundaries.member_of([GrpcMetadata(pairs)])
            self.bnd = boundaries.enter("grpc", "", method, member)
            forced: dict[str, Any] = {}
            if self.bnd is not None:
                forced = boundaries.forced_attrs(flags)
                flags |= 1  # a declared boundary is recorded whatever the trace ratio
            self.token = context.set_current(TraceContext(trace_id, own, flags))
            if not flags & 1 and rec.config.mode == "hops":
                return  # not sampled: propagate the decision, record nothing
            code = getattr(behavior, "__code__", None)
            if code is not None:
                rows.CODE_IDS[id(code)] = code
                self.key = id(code) << 16
            peer = servicer_context.peer() if hasattr(servicer_context, "peer") else ""
            self.rid = rec.new_resource(
                "rpc",
                0,
                name=method,
                key=self.key or _program_key(rec),
                trace_id=trace_id,
                span_id=own,
                parent_span_id=parent.span_id if parent else "",
                sampled=flags & 1,
                protocol="grpc",
                library=library,
                method=method,
                target=method,
                peer=str(peer),
                headers=entry_headers_json(pairs),
                **forced,
            )
            _emit(K.MSG_RECV, self.rid, 0, self.key)
        except Exception as exc:
            rec.fault("grpc server", exc)

    def body(self, request: Any) -> None:
        """With ``--redact bodies``: the request message, when it is one message (bytes, or
        a protobuf message serialised back), not a stream."""
        if not self.rid or not redact.ACTIVE.bodies:
            return
        rec = _r.RECORDER
        try:
            data = request if isinstance(request, bytes) else None
            if data is None and callable(getattr(request, "SerializeToString", None)):
                data = request.SerializeToString()
            if isinstance(data, bytes) and rec is not None:
                rec.update_resource(self.rid, **redact.body_attrs(data))
        except Exception as exc:
            if rec is not None:
                rec.fault("grpc body", exc)

    def end(self, servicer_context: Any, raised: BaseException | None) -> None:
        """Write ``rpc.reply`` with the status the handler ended with; drop the context."""
        try:
            if self.rid:
                rid, self.rid = self.rid, 0
                code = servicer_context.code() if hasattr(servicer_context, "code") else None
                status = _status(code) if code is not None else (UNKNOWN if raised else 0)
                _emit(K.RPC_REPLY, rid, status, self.key)
        except Exception as exc:
            rec = _r.RECORDER
            if rec is not None:
                rec.fault("grpc server reply", exc)
        finally:
            bnd, self.bnd = self.bnd, None
            boundaries.leave(bnd)
            token, self.token = self.token, None
            if token is not None:
                try:
                    context.reset(token)
                except ValueError:  # reset from another context (a generator moved on)
                    pass


def _sync_behavior(hcd: Any, behavior: Any, library: str, streaming: bool) -> Any:
    if streaming:

        def stream(request: Any, ctx: Any) -> Iterator[Any]:
            call = _ServerCall(hcd, behavior, ctx, library)
            call.body(request)
            raised: BaseException | None = None
            try:
                result = behavior(request, ctx)
                if result is not None:
                    yield from result
            except BaseException as exc:
                raised = exc
                raise
            finally:
                call.end(ctx, raised)

        return stream

    def unary(request: Any, ctx: Any) -> Any:
        call = _ServerCall(hcd, behavior, ctx, library)
        call.body(request)
        raised: BaseException | None = None
        try:
            return behavior(request, ctx)
        except BaseException as exc:
            raised = exc
            raise
        finally:
            call.end(ctx, raised)

    return unary


def _aio_behavior(hcd: Any, behavior: Any) -> Any:
    library = "grpcio.aio"
    if inspect.isasyncgenfunction(behavior):

        async def agen(request: Any, ctx: Any) -> AsyncIterator[Any]:
            call = _ServerCall(hcd, behavior, ctx, library)
            call.body(request)
            raised: BaseException | None = None
            try:
                async for item in behavior(request, ctx):
                    yield item
            except BaseException as exc:
                raised = exc
                raise
            finally:
                call.end(ctx, raised)

        return agen
    if inspect.iscoroutinefunction(behavior):

        async def coro(request: Any, ctx: Any) -> Any:
            call = _ServerCall(hcd, behavior, ctx, library)
            call.body(request)
            raised: BaseException | None = None
            try:
                return await behavior(request, ctx)
            except BaseException as exc:
                raised = exc
                raise
            finally:
                call.end(ctx, raised)

        return coro
    return _sync_behavior(hcd, behavior, library, inspect.isgeneratorfunction(behavior))


_KINDS = (
    # (handler attribute, grpc's constructor, response streaming)
    ("unary_unary", "unary_unary_rpc_method_handler", False),
    ("unary_stream", "unary_stream_rpc_method_handler", True),
    ("stream_unary", "stream_unary_rpc_method_handler", False),
    ("stream_stream", "stream_stream_rpc_method_handler", True),
)


def _wrap_handler(handler: Any, hcd: Any, aio: bool) -> Any:
    """The handler with its behaviour recorded; the handler itself if nothing to wrap."""
    if handler is None:
        return None
    rec = _r.RECORDER
    if rec is None:
        return handler
    try:
        grpc = sys.modules["grpc"]
        for attr, make, streaming in _KINDS:
            behavior = getattr(handler, attr, None)
            if behavior is None:
                continue
            if aio:
                wrapped = _aio_behavior(hcd, behavior)
            else:
                wrapped = _sync_behavior(hcd, behavior, "grpcio", streaming)
            return getattr(grpc, make)(
                wrapped,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    except Exception as exc:
        rec.fault("grpc server handler", exc)
    return handler


class _ServerHooks:
    def intercept_service(self, continuation: Any, hcd: Any) -> Any:
        return _wrap_handler(continuation(hcd), hcd, False)


class _AioServerHooks:
    async def intercept_service(self, continuation: Any, hcd: Any) -> Any:
        return _wrap_handler(await continuation(hcd), hcd, True)


# --- where channels and servers are created -------------------------------------------------


def _interceptor(kind: str, peer: str) -> Any:
    return _classes[kind](peer)


def _mark(channel: Any) -> Any:
    try:
        channel._wisp_grpc = True
    except (AttributeError, TypeError):
        pass
    return channel


def _intercepted(channel: Any, target: Any) -> Any:
    try:
        return _mark(_orig["intercept_channel"](channel, _interceptor("client", str(target))))
    except Exception as exc:
        rec = _r.RECORDER
        if rec is not None:
            rec.fault("grpc channel", exc)
        return channel


def _insecure_channel(target: Any, *args: Any, **kwargs: Any) -> Any:
    return _intercepted(_orig["insecure_channel"](target, *args, **kwargs), target)


def _secure_channel(target: Any, *args: Any, **kwargs: Any) -> Any:
    return _intercepted(_orig["secure_channel"](target, *args, **kwargs), target)


def _intercept_channel(channel: Any, *interceptors: Any) -> Any:
    """A channel created before the hooks (agent started late) gets ours here, innermost."""
    if getattr(channel, "_wisp_grpc", False):
        return _mark(_orig["intercept_channel"](channel, *interceptors))
    try:
        ours = _interceptor("client", "")
    except Exception as exc:
        rec = _r.RECORDER
        if rec is not None:
            rec.fault("grpc channel", exc)
        return _orig["intercept_channel"](channel, *interceptors)
    return _mark(_orig["intercept_channel"](channel, *interceptors, ours))


def _with_ours(interceptors: Any, kind: str) -> Any:
    try:
        return [*(interceptors or ()), _classes[kind]()]
    except Exception as exc:
        rec = _r.RECORDER
        if rec is not None:
            rec.fault(f"grpc {kind}", exc)
        return interceptors


def _aio_insecure_channel(
    target: Any,
    options: Any = None,
    compression: Any = None,
    interceptors: Any = None,
    *args: Any,
    **kwargs: Any,
) -> Any:
    ours = _aio_client(target, interceptors)
    return _orig["aio.insecure_channel"](target, options, compression, ours, *args, **kwargs)


def _aio_secure_channel(
    target: Any,
    credentials: Any,
    options: Any = None,
    compression: Any = None,
    interceptors: Any = None,
    *args: Any,
    **kwargs: Any,
) -> Any:
    ours = _aio_client(target, interceptors)
    return _orig["aio.secure_channel"](
        target, credentials, options, compression, ours, *args, **kwargs
    )


def _aio_client(target: Any, interceptors: Any) -> Any:
    try:
        ours = [_classes[k](str(target)) for k in _classes if k.startswith("aio client")]
        return [*(interceptors or ()), *ours]
    except Exception as exc:
        rec = _r.RECORDER
        if rec is not None:
            rec.fault("grpc.aio channel", exc)
        return interceptors


def _aio_call(orig: Callable[..., Any]) -> Callable[..., Any]:
    """``__call__`` of a ``grpc.aio`` multicallable: notes the program's line in
    ``_call_site`` while grpc starts the call (and its interceptors' task)."""

    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        rec = _r.RECORDER
        if rec is None:
            return orig(self, *args, **kwargs)
        token = None
        try:
            token = _call_site.set(_program_key(rec))
        except Exception as exc:
            rec.fault("grpc.aio call", exc)
        try:
            return orig(self, *args, **kwargs)
        finally:
            if token is not None:
                _call_site.reset(token)

    return __call__


def _server(
    thread_pool: Any, handlers: Any = None, interceptors: Any = None, *a: Any, **k: Any
) -> Any:
    return _orig["server"](thread_pool, handlers, _with_ours(interceptors, "server"), *a, **k)


def _aio_server(
    migration_thread_pool: Any = None,
    handlers: Any = None,
    interceptors: Any = None,
    *a: Any,
    **k: Any,
) -> Any:
    ours = _with_ours(interceptors, "aio server")
    return _orig["aio.server"](migration_thread_pool, handlers, ours, *a, **k)


def _patch() -> None:
    """Hook ``grpc`` (imported by now) and ``grpc.aio`` if it imported; all or nothing."""
    global _GRPC_DIR
    grpc: Any = sys.modules["grpc"]
    _GRPC_DIR = os.path.dirname(grpc.__file__) + os.sep
    _classes["client"] = type(
        "WillowispClientInterceptor",
        (
            _ClientHooks,
            grpc.UnaryUnaryClientInterceptor,
            grpc.UnaryStreamClientInterceptor,
            grpc.StreamUnaryClientInterceptor,
            grpc.StreamStreamClientInterceptor,
        ),
        {},
    )
    _classes["server"] = type(
        "WillowispServerInterceptor", (_ServerHooks, grpc.ServerInterceptor), {}
    )
    patches: list[tuple[Any, str, str, Any]] = [
        (grpc, "insecure_channel", "insecure_channel", _insecure_channel),
        (grpc, "secure_channel", "secure_channel", _secure_channel),
        (grpc, "intercept_channel", "intercept_channel", _intercept_channel),
        (grpc, "server", "server", _server),
    ]
    aio = getattr(grpc, "aio", None) or sys.modules.get("grpc.aio")
    if aio is not None:
        # One instance per kind: grpc.aio files an interceptor under the first kind it is.
        for kind in ("UnaryUnary", "UnaryStream", "StreamUnary", "StreamStream"):
            _classes[f"aio client {kind}"] = type(
                f"WillowispAio{kind}Interceptor",
                (_AioClientHooks, getattr(aio, f"{kind}ClientInterceptor")),
                {},
            )
        _classes["aio server"] = type(
            "WillowispAioServerInterceptor", (_AioServerHooks, aio.ServerInterceptor), {}
        )
        patches += [
            (aio, "insecure_channel", "aio.insecure_channel", _aio_insecure_channel),
            (aio, "secure_channel", "aio.secure_channel", _aio_secure_channel),
            (aio, "server", "aio.server", _aio_server),
        ]
        channel = sys.modules.get("grpc.aio._channel")
        for kind in _AIO_CALLABLES if channel is not None else ():
            cls = getattr(channel, f"{kind}MultiCallable", None)
            if cls is not None and "__call__" in cls.__dict__:
                wrapper = _aio_call(cls.__dict__["__call__"])
                patches.append((cls, "__call__", f"aio.{kind}.__call__", wrapper))
    mark = len(_patched)
    try:
        for module, attr, name, value in patches:
            _orig[name] = getattr(module, attr)
            _patched.append((module, attr, _orig[name]))
            setattr(module, attr, value)
    except BaseException:
        _undo(mark)
        raise


def install() -> None:
    """Hook grpc now if the program has imported it, else right after it does. Idempotent.
    A failure now undoes everything and raises; a failure later, at the import, is an
    agent.fault and leaves grpc unhooked. Without grpc installed nothing ever happens."""
    if _patched or _waits:
        return
    try:
        waiting = post_import.when_imported("grpc", _patch, "install grpc")
        if waiting is not None:
            _waits.append(waiting)
    except BaseException:
        uninstall()
        raise


def uninstall() -> None:
    """Stop waiting for the import and put back what was hooked. Channels and servers made
    meanwhile keep their interceptors, which record nothing once the agent has stopped."""
    while _waits:
        post_import.cancel(_waits.pop())
    _undo(0)


def _undo(keep: int) -> None:
    while len(_patched) > keep:
        module, attr, previous = _patched.pop()
        setattr(module, attr, previous)
