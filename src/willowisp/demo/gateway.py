"""The demo shop's edge gateway: a small HTTP relay on asyncio streams, inside the shop's
orchestrator, that forwards each request to one upstream with an allowlist of headers.

It is the demo's seeded "hop that drops the trace header": the allowlist was written before
the shop had tracing and does not name ``traceparent``, so the pricing worker's calls to the
ledger arrive without context (``willowisp analyze`` reports it as ``dropped-context``). The
agents do not record raw asyncio streams, so the relay itself leaves no trace — like a
proxy without an agent. One request per connection, bodies only with a Content-Length: enough here.
"""

from __future__ import annotations

import asyncio

# What the relay forwards; everything else (traceparent, tracestate, ...) is dropped.
ALLOWED_HEADERS = frozenset({"host", "content-type", "content-length", "accept", "user-agent"})
# The fixed shop's allowlist (``willowisp demo --fixed``) also names the trace context.
FIXED_HEADERS = ALLOWED_HEADERS | {"traceparent", "tracestate", "baggage"}
HEAD_LIMIT = 64 * 1024


async def start_gateway(upstream_port: int, fixed: bool = False) -> asyncio.Server:
    """Listen on a free loopback port; every request goes to ``upstream_port`` (with
    ``fixed``, the trace context headers go too)."""
    allowed = FIXED_HEADERS if fixed else ALLOWED_HEADERS

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _relay_one(reader, writer, upstream_port, allowed)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # a client or upstream that went away: nothing to relay
        finally:
            writer.close()

    return await asyncio.start_server(relay, "127.0.0.1", 0, limit=HEAD_LIMIT)


async def _relay_one(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    upstream_port: int,
    allowed: frozenset[str],
) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    kept: list[str] = []
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() in allowed:
            kept.append(f"{name.strip()}: {value.strip()}")
    length = _content_length(head.decode("latin-1"))
    body = await reader.readexactly(length) if length else b""
    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
    try:
        lines = [request_line, *kept, "Connection: close", "", ""]
        up_writer.write("\r\n".join(lines).encode("latin-1") + body)
        await up_writer.drain()
        reply_head = await up_reader.readuntil(b"\r\n\r\n")
        reply_body = await up_reader.readexactly(_content_length(reply_head.decode("latin-1")))
    finally:
        up_writer.close()
    writer.write(reply_head + reply_body)
    await writer.drain()


def _content_length(head: str) -> int:
    for line in head.split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == "content-length":
            return int(value)
    return 0
