"""RTSP messages: requests, responses, interleaved frames and header fields.

RTSP 1.0 (RFC 2326 4, 6, 7) and 2.0 (RFC 7826 5, 7, 8) messages look like
HTTP/1.1 ones: a start line, header fields, an empty line, then a body whose
length comes only from Content-Length. Binary data interleaved on the control
connection (RFC 2326 10.12, RFC 7826 14) travels in ``$`` frames.

A proxy forwards most messages nearly untouched, so a parsed message keeps
what it was parsed from: the start line as received, each header field's raw
text (continuation lines and line ends included) and the whole header block.
Fields the proxy does not change go back out byte for byte; changed or new
fields are written as ``Name: value`` with CRLF. Header text is decoded as
UTF-8 (RFC 2326 15.1 allows ISO 10646) with ``surrogateescape``, so any byte
survives the round trip.

Not supported: header-value semantics beyond the few accessors here (the
structured headers live in :mod:`hostednat.rtsp.headers` and
:mod:`hostednat.rtsp.transport`).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import attrs

from hostednat.rtsp.errors import REASONS, LocalProtocolError

__all__ = [
    "SUPPORTED_VERSIONS",
    "Headers",
    "InterleavedFrame",
    "Request",
    "Response",
    "make_response",
]

#: The versions this codec speaks (RFC 2326 3.1, RFC 7826 4.2).
SUPPORTED_VERSIONS = ("RTSP/1.0", "RTSP/2.0")

# RFC 7230 3.2.6: token = 1*tchar, the grammar of a header field name.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")

# One header field: lower-case name, name, value, raw text or None if changed.
_Field = tuple[str, str, str, str | None]

# RFC 2326 10.12: "$", one-byte channel, two-byte length in network order.
_FRAME_HEADER = struct.Struct(">cBH")


def _check_field(name: str, value: str) -> None:
    """Refuse a field that would not serialize to a single header line."""
    if _TOKEN.fullmatch(name) is None:
        raise LocalProtocolError(f"illegal header field name {name!r}")
    if "\r" in value or "\n" in value or "\0" in value:
        raise LocalProtocolError(f"line break or NUL in header {name!r}")


class Headers:
    """Ordered, case-insensitive multi-dict of header fields.

    Fields keep their order and repeats. A field that came off the wire and
    was not changed keeps its raw text and re-serializes exactly; a field
    set or added here is written ``Name: value``.

    :param fields: initial ``(name, value)`` pairs, in order.
    :raises LocalProtocolError: on a field name that is not a token or a
        value with a line break.
    """

    __slots__ = ("_dirty", "_fields")

    def __init__(self, fields: Iterable[tuple[str, str]] = ()) -> None:
        self._fields: list[_Field] = []
        self._dirty = False
        for name, value in fields:
            self.add(name, value)

    @classmethod
    def _from_wire(cls, fields: list[_Field]) -> Headers:
        """Wrap fields the parser built, raw text included."""
        headers = cls.__new__(cls)
        headers._fields = fields
        headers._dirty = False
        return headers

    def get(self, name: str) -> str | None:
        """Return the value of the first field called *name*, or None."""
        key = name.lower()
        for field in self._fields:
            if field[0] == key:
                return field[2]
        return None

    def get_all(self, name: str) -> list[str]:
        """Return the values of every field called *name*, in order."""
        key = name.lower()
        return [field[2] for field in self._fields if field[0] == key]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = name.lower()
        return any(field[0] == key for field in self._fields)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for field in self._fields:
            yield field[1], field[2]

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        mine = [(field[0], field[2]) for field in self._fields]
        return mine == [(field[0], field[2]) for field in other._fields]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"

    def set(self, name: str, value: str) -> None:
        """Give *name* the single value *value*.

        The first field called *name* is replaced where it stands, later
        ones are removed; if there is none the field is appended.
        """
        _check_field(name, value)
        key = name.lower()
        kept: list[_Field] = []
        replaced = False
        for field in self._fields:
            if field[0] != key:
                kept.append(field)
            elif not replaced:
                kept.append((key, name, value, None))
                replaced = True
        if not replaced:
            kept.append((key, name, value, None))
        self._fields = kept
        self._dirty = True

    def add(self, name: str, value: str) -> None:
        """Append a field, keeping any already called *name*."""
        _check_field(name, value)
        self._fields.append((name.lower(), name, value, None))
        self._dirty = True

    def remove(self, name: str) -> None:
        """Remove every field called *name*; absent names are ignored."""
        key = name.lower()
        kept = [field for field in self._fields if field[0] != key]
        if len(kept) != len(self._fields):
            self._fields = kept
            self._dirty = True

    def copy(self) -> Headers:
        """Return an independent copy that keeps the raw field text."""
        headers = Headers._from_wire(list(self._fields))
        headers._dirty = self._dirty
        return headers

    def _render(self) -> str:
        """Return the header lines as text, each ending in its line end."""
        parts = []
        for _, name, value, raw in self._fields:
            parts.append(raw if raw is not None else f"{name}: {value}\r\n")
        return "".join(parts)


class _Wire(NamedTuple):
    """What a parsed message was read from, to serialize it unchanged."""

    start: tuple[object, ...]
    start_line: str
    end_line: str
    head: bytes


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _check_start(*parts: str) -> None:
    """Refuse a start-line element that would break the line apart."""
    for part in parts:
        if not part or " " in part or "\r" in part or "\n" in part:
            raise LocalProtocolError(f"illegal start-line element {part!r}")


class _Message:
    """What requests and responses share: headers, a body, a CSeq."""

    headers: Headers
    body: bytes

    @property
    def cseq(self) -> str | None:
        """The CSeq header value (RFC 2326 12.17), or None."""
        return self.headers.get("CSeq")

    def set_body(self, body: bytes) -> None:
        """Replace the body and keep Content-Length (RFC 2326 12.14) true."""
        self.body = body
        if body or "Content-Length" in self.headers:
            self.headers.set("Content-Length", str(len(body)))


@attrs.define
class Request(_Message):
    """An RTSP request (RFC 2326 6, RFC 7826 7).

    :param method: the method token, e.g. ``SETUP``.
    :param uri: the Request-URI as written, ``*`` included.
    :param version: ``RTSP/1.0`` or ``RTSP/2.0``.
    :param headers: the header fields.
    :param body: the message body, sized by Content-Length.
    """

    method: str
    uri: str
    version: str
    headers: Headers
    body: bytes = b""
    _wire: _Wire | None = attrs.field(default=None, init=False, eq=False, repr=False)

    def serialize(self) -> bytes:
        """Return the wire form; unchanged parsed requests come out exact."""
        wire = self._wire
        if wire is not None and wire.start == (self.method, self.uri, self.version):
            if not self.headers._dirty:
                return wire.head + self.body
            start, end = wire.start_line, wire.end_line
        else:
            _check_start(self.method, self.uri, self.version)
            # RFC 2326 10.12: a message slot starting with "$" is a frame.
            if _TOKEN.fullmatch(self.method) is None or self.method[0] == "$":
                raise LocalProtocolError(f"illegal method {self.method!r}")
            start = f"{self.method} {self.uri} {self.version}\r\n"
            end = "\r\n" if wire is None else wire.end_line
        return _encode(start + self.headers._render() + end) + self.body


@attrs.define
class Response(_Message):
    """An RTSP response (RFC 2326 7, RFC 7826 8).

    :param version: ``RTSP/1.0`` or ``RTSP/2.0``.
    :param status: the three-digit status code.
    :param reason: the reason phrase, possibly empty.
    :param headers: the header fields.
    :param body: the message body, sized by Content-Length.
    """

    version: str
    status: int
    reason: str
    headers: Headers
    body: bytes = b""
    _wire: _Wire | None = attrs.field(default=None, init=False, eq=False, repr=False)

    def serialize(self) -> bytes:
        """Return the wire form; unchanged parsed responses come out exact."""
        wire = self._wire
        if wire is not None and wire.start == (self.version, self.status, self.reason):
            if not self.headers._dirty:
                return wire.head + self.body
            start, end = wire.start_line, wire.end_line
        else:
            _check_start(self.version)
            if not 100 <= self.status <= 999:
                raise LocalProtocolError(f"illegal status {self.status}")
            if "\r" in self.reason or "\n" in self.reason:
                raise LocalProtocolError("line break in reason phrase")
            start = f"{self.version} {self.status} {self.reason}\r\n"
            end = "\r\n" if wire is None else wire.end_line
        return _encode(start + self.headers._render() + end) + self.body


@attrs.frozen
class InterleavedFrame:
    """Binary data on the control connection (RFC 2326 10.12, RFC 7826 14).

    :param channel: the channel byte, as negotiated with ``interleaved=``.
    :param payload: up to 65535 bytes, the limit of the 16-bit length.
    """

    channel: int
    payload: bytes

    def serialize(self) -> bytes:
        """Return ``$``, the channel, the 16-bit length and the payload."""
        if not 0 <= self.channel <= 255:
            raise LocalProtocolError(f"channel {self.channel} out of 0-255")
        if len(self.payload) > 0xFFFF:
            raise LocalProtocolError("interleaved payload over 65535 bytes")
        header = _FRAME_HEADER.pack(b"$", self.channel, len(self.payload))
        return header + self.payload


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """Build an answer the proxy gives itself, e.g. 453 or 503.

    CSeq is copied from the request (RFC 2326 12.17), and so is Session when
    present (RFC 2326 12.37); an unknown request version is answered in
    RTSP/1.0.

    :param request: the request being answered.
    :param status: the status code.
    :param reason: the reason phrase; :data:`REASONS` by default.
    :param headers: further fields, appended in order.
    :param body: the body; Content-Length is set when it is not empty.
    """
    version = request.version
    if version not in SUPPORTED_VERSIONS:
        version = SUPPORTED_VERSIONS[0]
    if reason is None:
        reason = REASONS.get(status, "")

    answer = Headers()
    cseq = request.cseq
    if cseq is not None:
        answer.add("CSeq", cseq)
    session = request.headers.get("Session")
    if session is not None:
        answer.add("Session", session)
    for name, value in headers:
        answer.add(name, value)

    response = Response(version, status, reason, answer)
    if body:
        response.set_body(body)
    return response
