"""Hooks for Amazon SQS through botocore (and so boto3): every client call goes through
``BaseClient._make_api_call``, which the hook wraps for the ``sqs`` service only.

Send: ``SendMessage`` and each entry of ``SendMessageBatch`` get a ``traceparent`` String
message attribute (a copy of the caller's dict; one already there is kept). SQS allows 10
message attributes: when the program already uses all 10, the context goes into the
``AWSTraceHeader`` *system* attribute instead (X-Ray format; it does not count against
the limit), and when that is taken too nothing is injected and the send is recorded with
``span_id`` '' (the consumer is then linked by MessageId alone). The MessageId SQS returns
becomes the message id. Destination: the queue's name, the last part of ``QueueUrl``.

Receive: ``ReceiveMessage`` asks for the ``traceparent`` attribute and the
``AWSTraceHeader`` system attribute as well (added to the names the program asked for,
as the OTel boto3sqs instrumentation does) and records one receive per message, extracting
from its message attributes, else from ``AWSTraceHeader``. With ``WaitTimeSeconds`` > 0
the long poll is a ``unit.block`` on the queue, ``unit.wake`` (timeout) when it returns
no message.

Tested against botocore's ``Stubber`` (the real client, serialisation and events, with
canned responses): no real SQS runs in the test environment.
"""

from __future__ import annotations

from typing import Any

from willowisp.agent import boundaries
from willowisp.agent import messaging as m
from willowisp.agent import recorder as _r
from willowisp.wire.carriers import SqsMessageAttributes, SqsSystemAttributes
from willowisp.wire.tracecontext import TRACECONTEXT, TRACEPARENT
from willowisp.wire.traceparent import TraceContext
from willowisp.wire.xray import XRayContext

PROTOCOL, LIBRARY = "sqs", "botocore"
MAX_ATTRIBUTES = 10  # SQS's limit on message attributes per message
AWS_TRACE_HEADER = SqsSystemAttributes.AWS_TRACE_HEADER

_patches = m.Patches()
_orig: dict[str, Any] = {}  # originals by attribute name; kept after uninstall for calls in flight
_lib_dirs: tuple[str, ...] = ()  # botocore's and boto3's folders: skipped when locating


def _queue(params: dict[str, Any]) -> str:
    return str(params.get("QueueUrl", "?")).rstrip("/").rsplit("/", 1)[-1]


def _inject(entry: dict[str, Any]) -> tuple[dict[str, Any], TraceContext | None]:
    """A copy of one message's parameters carrying the context, and the context that went
    on the wire (None when there was no room)."""
    entry = dict(entry)
    attrs = dict(entry.get("MessageAttributes") or {})
    carrier = SqsMessageAttributes(attrs)
    found = TRACECONTEXT.extract(carrier)
    if found is not None:
        return entry, found.context
    ctx = m.outgoing()
    if len(attrs) < MAX_ATTRIBUTES:
        TRACECONTEXT.inject(boundaries.w3c(ctx), carrier)
        entry["MessageAttributes"] = attrs
        return entry, ctx
    system = dict(entry.get("MessageSystemAttributes") or {})
    if AWS_TRACE_HEADER in system:
        return entry, None  # both carriers taken by the program: nothing crosses
    header = XRayContext.of(ctx).header()
    system[AWS_TRACE_HEADER] = {"DataType": "String", "StringValue": header}
    entry["MessageSystemAttributes"] = system
    return entry, ctx


def _send(rec: _r.Recorder, key: int, queue: str, entry: dict[str, Any]) -> tuple[Any, int]:
    entry, ctx = _inject(entry)
    rid = m.record_send(
        rec,
        key,
        protocol=PROTOCOL,
        library=LIBRARY,
        destination=queue,
        message_id="",
        ctx=ctx,
    )
    return entry, rid


def _with_names(params: dict[str, Any]) -> dict[str, Any]:
    """ReceiveMessage parameters that also ask for the attributes carrying the context."""
    params = dict(params)
    names = list(params.get("MessageAttributeNames") or [])
    if not {"All", ".*", TRACEPARENT} & set(names):
        params["MessageAttributeNames"] = [*names, TRACEPARENT]
    system = list(params.get("MessageSystemAttributeNames") or [])
    if not {"All", AWS_TRACE_HEADER} & set(system):
        params["MessageSystemAttributeNames"] = [*system, AWS_TRACE_HEADER]
    return params


def _make_api_call(self: Any, operation_name: str, api_params: Any) -> Any:
    call = _orig["_make_api_call"]
    rec = _r.RECORDER
    if rec is None or self.meta.service_model.service_name != "sqs":
        return call(self, operation_name, api_params)
    if operation_name == "SendMessage":
        return _send_message(rec, self, call, api_params)
    if operation_name == "SendMessageBatch":
        return _send_batch(rec, self, call, api_params)
    if operation_name == "ReceiveMessage":
        return _receive(rec, self, call, api_params)
    return call(self, operation_name, api_params)


def _send_message(rec: _r.Recorder, client: Any, call: Any, params: Any) -> Any:
    rid = 0
    try:
        params, rid = _send(rec, m.program_key(_lib_dirs), _queue(params), params)
    except Exception as exc:
        rec.fault("sqs.send_message", exc)
    response = call(client, "SendMessage", params)
    try:
        m.set_message_id(rec, rid, str(response.get("MessageId") or ""))
    except Exception as exc:
        rec.fault("sqs.send_message", exc)
    return response


def _send_batch(rec: _r.Recorder, client: Any, call: Any, params: Any) -> Any:
    rids: dict[str, int] = {}  # entry Id -> send resource
    try:
        key, queue = m.program_key(_lib_dirs), _queue(params)
        entries = []
        for given in params.get("Entries") or []:
            entry, rid = _send(rec, key, queue, given)
            rids[str(entry.get("Id"))] = rid
            entries.append(entry)
        params = {**params, "Entries": entries}
    except Exception as exc:
        rec.fault("sqs.send_message_batch", exc)
    response = call(client, "SendMessageBatch", params)
    try:
        for ok in response.get("Successful") or []:
            m.set_message_id(rec, rids.get(str(ok.get("Id")), 0), str(ok.get("MessageId") or ""))
    except Exception as exc:
        rec.fault("sqs.send_message_batch", exc)
    return response


def _receive(rec: _r.Recorder, client: Any, call: Any, params: Any) -> Any:
    key = wait = 0
    queue = "?"
    try:
        key, queue = m.program_key(_lib_dirs), _queue(params)
        params = _with_names(params)
        if int(params.get("WaitTimeSeconds") or 0) > 0:
            wait = m.record_block(rec, key, PROTOCOL, LIBRARY, queue)
    except Exception as exc:
        rec.fault("sqs.receive_message", exc)
    response = call(client, "ReceiveMessage", params)
    try:
        msgs = response.get("Messages") or []
        for msg in msgs:
            m.record_recv(
                rec,
                key,
                protocol=PROTOCOL,
                library=LIBRARY,
                destination=queue,
                message_id=str(msg.get("MessageId") or ""),
                carriers=[
                    SqsMessageAttributes(msg.get("MessageAttributes") or {}),
                    SqsSystemAttributes(msg.get("Attributes") or {}),
                ],
            )
        if wait and not msgs:
            m.record_wake(rec, wait, m.WAKE_TIMEOUT, key)
    except Exception as exc:
        rec.fault("sqs.receive_message", exc)
    return response


def _patch() -> None:
    global _lib_dirs
    import sys

    # From sys.modules: while its first import runs, ``botocore.client`` is not yet an
    # attribute of the ``botocore`` package.
    client = sys.modules["botocore.client"]
    botocore, boto3 = sys.modules["botocore"], sys.modules.get("boto3")
    _lib_dirs = (m.package_dir(botocore),) + ((m.package_dir(boto3),) if boto3 else ())
    _orig["_make_api_call"] = _patches.set(client.BaseClient, "_make_api_call", _make_api_call)


_hook = m.DeferredHook("botocore.client", _patch, _patches, "install botocore")
install = _hook.install  # hooks botocore (SQS) now if imported, else when the program imports it
uninstall = _hook.uninstall
