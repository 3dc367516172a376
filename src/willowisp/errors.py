"""Willowisp's error hierarchy. Library code raises these; only the CLI prints them.

    WillowispError
     ├── UsageError              bad command-line usage or configuration
     ├── ProtocolError           a peer broke a live protocol (control channel, native stream)
     └── TraceError              a trace cannot be (fully) read
          └── TraceFormatError    bytes that are not a valid .wtrace (or importable) file
               ├── TraceVersionError   written by a newer major version of the format
               └── TraceLimitError     a declared size is over a safety bound

Messages name the file, the place in it, what was expected and what was seen, e.g.
"orders-4242-9f2c1a-1.wtrace: chunk 17 at byte 81920: checksum 0x1f40 != 0x9a02".
"""

from __future__ import annotations


class WillowispError(Exception):
    """Base of every error Willowisp raises on purpose."""


class UsageError(WillowispError):
    """The command line or the configuration is wrong."""


class ProtocolError(WillowispError):
    """A peer broke a live protocol (or one of its limits); ``docs/protocols.md``.

    ``code`` is the error code of the reply the peer is sent (``bad-frame``, ``bad-json``,
    ...); ``message`` is the one line a person reads. ``truncated`` (the peer closed inside
    a frame) is never sent; it only ends a read.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class TraceError(WillowispError):
    """A trace could not be read, or not all of it."""


class TraceFormatError(TraceError):
    """The bytes are not what the format says they must be."""


class TraceVersionError(TraceFormatError):
    """The file was written by a newer major version of the format."""


class TraceLimitError(TraceFormatError):
    """A length in the file is over a safety bound (decompression bombs, absurd counts)."""
