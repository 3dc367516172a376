"""Carriers for message transports: each adapts one transport's header container to the
:class:`~willowisp.wire.codec.Getter` / :class:`~willowisp.wire.codec.Setter` pair.

Every carrier wraps the caller's own object and reads and writes it in place, so an
``inject`` lands directly in the request or message about to be sent. Reads never raise:
entries whose name or value has the wrong type, or bytes that are not UTF-8, are skipped.
Names are matched case-insensitively everywhere (HTTP requires it; for the others it costs
nothing and tolerates senders that capitalise), and written lowercase.

The environment and JSON payloads, which need name mapping rather than plain lookup, have
their own modules (:mod:`~willowisp.wire.env`, :mod:`~willowisp.wire.payload`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, cast


def _text(value: object, encoding: str = "utf-8") -> str | None:
    """``value`` as text: str as is, bytes decoded, anything else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode(encoding)
        except UnicodeDecodeError:
            return None
    return None


def _name(key: object) -> str | None:
    if type(key) is str:  # the usual case, checked first: this runs once per header per lookup
        return key.lower()
    text = _text(key, "latin-1")
    return text.lower() if text is not None else None


class _MappingCarrier:
    """Shared reader/writer for carriers that are a ``dict`` of name -> str-or-bytes."""

    def __init__(self, headers: MutableMapping[Any, Any]) -> None:
        self.headers = headers  # the caller's dict, read and written in place

    def get(self, name: str) -> list[str]:
        """Values under ``name`` (an exact lowercase key is tried first: the fast path)."""
        headers = self.headers
        found = _text(headers.get(name))
        if found is not None:
            return [found]
        out: list[str] = []
        for k, v in headers.items():
            if k != name and _name(k) == name:
                text = _text(v)
                if text is not None:
                    out.append(text)
        return out

    def names(self) -> Iterable[str]:
        """The lowercase names present."""
        return [n for n in map(_name, self.headers) if n is not None]

    def set(self, name: str, value: str) -> None:
        """Replace every key matching ``name`` with one lowercase ``name: value``."""
        headers = self.headers
        if headers:  # (the str test inline: this runs per key on every inject)
            stale = [
                k
                for k in headers
                if k != name and (k.lower() if type(k) is str else _name(k)) == name
            ]
            for k in stale:
                del headers[k]
        headers[name] = value


class HttpHeaders(_MappingCarrier):
    """HTTP headers as a ``dict`` (``{"Traceparent": "00-..."}``), str or bytes, read as
    ISO-8859-1 like HTTP itself. Repeated headers joined with "," are split by the codecs
    that allow lists (tracestate, baggage); for headers as a list of pairs use
    :class:`HeaderList`."""

    def get(self, name: str) -> list[str]:
        """Values under ``name``; bytes are decoded as ISO-8859-1."""
        headers = self.headers
        v = headers.get(name)
        if type(v) is str:  # fast path: the name is already lowercase, as inject writes it
            return [v]
        out: list[str] = []
        for k, v in headers.items():
            if (k.lower() if type(k) is str else _name(k)) == name:  # inline: per key, per get
                text = _text(v, "latin-1")
                if text is not None:
                    out.append(text)
        return out


def _named(pair: object, name: str) -> bool:
    return isinstance(pair, tuple) and len(pair) == 2 and _name(pair[0]) == name


class HeaderList:
    """A multi-valued list of ``(name, value)`` pairs: HTTP headers as ASGI / http.client
    give them (str or bytes, bytes read as ISO-8859-1)."""

    def __init__(self, pairs: list[tuple[Any, Any]], *, encoding: str = "latin-1") -> None:
        self.pairs = pairs  # the caller's list, read and appended to in place
        self.encoding = encoding

    def get(self, name: str) -> list[str]:
        """Every value under ``name``, in order."""
        out: list[str] = []
        for item in self.pairs:
            # _named inline, str names first: this runs per pair on every get
            if not isinstance(item, tuple) or len(item) != 2:
                continue
            key = item[0]
            if (key.lower() if type(key) is str else _name(key)) == name:
                value = item[1]
                text = value if type(value) is str else _text(value, self.encoding)
                if text is not None:
                    out.append(text)
        return out

    def names(self) -> Iterable[str]:
        """The lowercase names present."""
        return [
            n
            for n in (_name(p[0]) for p in self.pairs if isinstance(p, tuple) and len(p) == 2)
            if n is not None
        ]

    def set(self, name: str, value: str) -> None:
        """Drop every pair named ``name``, then append ``(name, value)``."""
        self.pairs[:] = [p for p in self.pairs if not _named(p, name)]
        self.pairs.append(self._pair(name, value))

    def _pair(self, name: str, value: str) -> tuple[Any, Any]:
        return (name, value)


class MessageHeaders:
    """HTTP headers as ``http.client`` and ``http.server`` parse them: an
    ``email.message.Message``, read through its own case-insensitive lookup. Parsed values
    are str (the bytes read as ISO-8859-1); one a program set as another object (an
    ``email.header.Header``) is skipped, as every carrier skips what is not text. Asking
    the message name by name, not copying its items, spares fetching the values nobody
    reads."""

    def __init__(self, message: Any) -> None:
        self.message = message  # the request's or response's own headers, in place

    def get(self, name: str) -> list[str]:
        """Every text value under ``name``, in order."""
        return [v for v in self.message.get_all(name, ()) if isinstance(v, str)]

    def names(self) -> Iterable[str]:
        """The lowercase names present."""
        # (the str test inline: this runs per header on every request)
        names = self.message.keys()  # (a list; iterating the message is a generator)
        found = [k.lower() if type(k) is str else _name(k) for k in names]
        if None in found:
            return [n for n in found if n is not None]
        return cast("list[str]", found)

    def set(self, name: str, value: str) -> None:
        """Replace every header named ``name`` with one ``name: value``."""
        del self.message[name]
        self.message[name] = value


class GrpcMetadata(HeaderList):
    """gRPC metadata: a list of ``(key, value)`` with lowercase ASCII keys. Binary keys
    (ending ``-bin``, e.g. OpenCensus ``grpc-trace-bin``) are skipped: no text codec
    reads them."""

    def get(self, name: str) -> list[str]:
        """Every text value under ``name``; always [] for ``-bin`` names."""
        return [] if name.endswith("-bin") else super().get(name)

    def names(self) -> Iterable[str]:
        """The lowercase text names present."""
        return [n for n in super().names() if not n.endswith("-bin")]


class KafkaHeaders(HeaderList):
    """Kafka record headers: a list of ``(str, bytes)``; values are the UTF-8 of the text
    (what the OTel Kafka instrumentations write)."""

    def __init__(self, pairs: list[tuple[Any, Any]]) -> None:
        super().__init__(pairs, encoding="utf-8")

    def _pair(self, name: str, value: str) -> tuple[Any, Any]:
        return (name, value.encode("utf-8"))


class AmqpHeaders(_MappingCarrier):
    """AMQP 0-9-1 ``BasicProperties.headers`` (pika, aio-pika): a dict whose values may be
    str or bytes (bytes read as UTF-8); other value types (ints, tables) are skipped."""


class THeaderHeaders(_MappingCarrier):
    """Apache Thrift THeader transport headers: a dict of str to str."""


class SqsMessageAttributes:
    """SQS user message attributes: ``{"traceparent": {"DataType": "String",
    "StringValue": "00-..."}}``. Only String attributes (including custom ``String.x``
    types) are read; Binary and Number ones are skipped."""

    def __init__(self, attributes: MutableMapping[Any, Any]) -> None:
        self.attributes = attributes  # the caller's MessageAttributes dict, in place

    def get(self, name: str) -> list[str]:
        """The StringValue under ``name`` when it is a String attribute."""
        out: list[str] = []
        for k, v in self.attributes.items():
            if _name(k) != name or not isinstance(v, Mapping):
                continue
            dtype, text = v.get("DataType"), v.get("StringValue")
            if isinstance(dtype, str) and dtype.split(".")[0] == "String" and isinstance(text, str):
                out.append(text)
        return out

    def names(self) -> Iterable[str]:
        """The lowercase attribute names present."""
        return [n for n in map(_name, self.attributes) if n is not None]

    def set(self, name: str, value: str) -> None:
        """Replace the attributes named ``name`` with one String attribute."""
        for k in [k for k in self.attributes if _name(k) == name]:
            del self.attributes[k]
        self.attributes[name] = {"DataType": "String", "StringValue": value}


class SqsSystemAttributes:
    """SQS message *system* attributes (``Message["Attributes"]`` as boto3 returns it):
    ``AWSTraceHeader`` carries the X-Ray header and is exposed as ``x-amzn-trace-id``.
    Nothing else is visible through this carrier."""

    AWS_TRACE_HEADER = "AWSTraceHeader"
    _NAME = "x-amzn-trace-id"

    def __init__(self, attributes: MutableMapping[Any, Any]) -> None:
        self.attributes = attributes  # the caller's Attributes dict, in place

    def get(self, name: str) -> list[str]:
        """The AWSTraceHeader value when asked for ``x-amzn-trace-id``."""
        if name != self._NAME:
            return []
        v = self.attributes.get(self.AWS_TRACE_HEADER)
        return [v] if isinstance(v, str) else []

    def names(self) -> Iterable[str]:
        """``x-amzn-trace-id`` when the attribute is present."""
        return [self._NAME] if self.AWS_TRACE_HEADER in self.attributes else []

    def set(self, name: str, value: str) -> None:
        """Set AWSTraceHeader (for tests and replays; SQS itself sets it on send)."""
        if name == self._NAME:
            self.attributes[self.AWS_TRACE_HEADER] = value
