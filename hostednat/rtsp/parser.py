"""Incremental, sans-IO RTSP parser for one direction of a connection.

Feed it bytes as they arrive; it returns every complete event so far and
keeps the rest. Framing follows RFC 2326 4 and 10.12 and RFC 7826 5, 14:

- Each message slot starts either with ``$`` (an interleaved frame:
  channel byte, 16-bit length, payload) or with a start line.
- Requests and responses share the stream, since both ends may send
  requests (RFC 2326 10, RFC 7826 13); a start line that begins with
  ``RTSP/`` is a status line.
- The header block ends at the first empty line; CRLF and bare LF line
  ends are both accepted, and empty lines between messages are skipped
  (RFC 2326 4 follows RFC 2616 4.1 here).
- Body length comes only from Content-Length, absent meaning no body
  (RFC 2326 12.14, RFC 7826 18.17); there is no chunked coding.

Every peer-supplied size is capped: the header block by
``max_header_bytes`` (checked before the empty line arrives) and the body
by ``max_body_bytes`` (checked as soon as Content-Length is read).
Interleaved payloads need no cap of their own, the 16-bit length bounds
them at 65535 bytes.

Errors raise a :class:`~hostednat.rtsp.errors.RemoteProtocolError`
subclass whose ``status`` is the answer to send; the parser then stays
failed. Events completed earlier in the same :meth:`RtspParser.feed` call
are lost with the exception, which suits a proxy that answers and closes.

Not supported: RTSP over HTTP tunnelling, and versions other than
RTSP/1.0 and RTSP/2.0 (rejected with 505).
"""

from __future__ import annotations

import re

from hostednat.rtsp.errors import (
    BodyTooLarge,
    HeaderTooLarge,
    RemoteProtocolError,
    RtspError,
    UnsupportedVersion,
)
from hostednat.rtsp.message import (
    SUPPORTED_VERSIONS,
    Headers,
    InterleavedFrame,
    Request,
    Response,
    _Field,
    _Wire,
)

__all__ = ["Event", "RtspParser"]

Event = Request | Response | InterleavedFrame

# RFC 7230 3.2.6 token, the grammar of a method (RFC 2326 6.1).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")

# A version-shaped token (RFC 2326 3.1: "RTSP" "/" 1*DIGIT "." 1*DIGIT), to
# tell "other version" (505) from "not a start line" (400).
_VERSION_LIKE = re.compile(r"[A-Za-z]+/[0-9]+\.[0-9]+")

_DOLLAR = 0x24
_CR = 0x0D
_LF = 0x0A

# Content-Length values longer than this cannot be under any sane cap.
_MAX_LENGTH_DIGITS = 18


class RtspParser:
    """Turn a byte stream into requests, responses and interleaved frames.

    :param max_header_bytes: cap on the start line plus header block; 16 KiB
        is several times the largest header block real clients send.
    :param max_body_bytes: cap on a Content-Length body; 1 MiB holds any
        SDP or parameter body with room to spare.
    """

    def __init__(
        self, max_header_bytes: int = 16384, max_body_bytes: int = 1_048_576
    ) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self._buffer = bytearray()
        self._scanned = 0
        self._pending: Request | Response | None = None
        self._pending_length = 0
        self._error: RtspError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for an event not yet complete; 0 at a message boundary.

        A connection that closes with bytes buffered ended mid-message.
        """
        held = len(self._buffer)
        if self._pending is not None and self._pending._wire is not None:
            held += len(self._pending._wire.head)
        return held

    def feed(self, data: bytes) -> list[Event]:
        """Take more bytes and return the events they complete, in order.

        :param data: the next bytes of the stream; may be empty.
        :raises RemoteProtocolError: on input that is not RTSP framing, now
            or at any earlier call.
        """
        if self._error is not None:
            error = self._error
            raise type(error)(f"parser failed earlier: {error}", error.status)

        buffer: bytes | bytearray
        if self._buffer:
            self._buffer += data
            buffer = self._buffer
        else:
            buffer = data

        events: list[Event] = []
        try:
            consumed = self._parse(buffer, events)
        except RtspError as error:
            self._error = error
            self._buffer = bytearray()
            raise

        if buffer is self._buffer:
            del self._buffer[:consumed]
        elif consumed < len(buffer):
            self._buffer = bytearray(buffer[consumed:])
        return events

    def _parse(self, buffer: bytes | bytearray, events: list[Event]) -> int:
        """Extract every complete event; return how many bytes were used."""
        position = 0
        size = len(buffer)
        while True:
            if self._pending is not None:
                end = position + self._pending_length
                if end > size:
                    return position
                self._pending.body = bytes(buffer[position:end])
                events.append(self._pending)
                self._pending = None
                position = end

            # RFC 2326 4 / RFC 2616 4.1: ignore empty lines before a message.
            while position < size and buffer[position] in (_CR, _LF):
                position += 1
            if position >= size:
                return position

            if buffer[position] == _DOLLAR:
                # RFC 2326 10.12: "$" channel length(16, network order) data.
                if position + 4 > size:
                    return position
                length = (buffer[position + 2] << 8) | buffer[position + 3]
                end = position + 4 + length
                if end > size:
                    return position
                channel = buffer[position + 1]
                payload = bytes(buffer[position + 4 : end])
                events.append(InterleavedFrame(channel, payload))
                position = end
                continue

            head_end = self._find_head_end(buffer, position)
            if head_end < 0:
                return position
            message, body_length = self._parse_head(bytes(buffer[position:head_end]))
            position = head_end
            if body_length:
                self._pending = message
                self._pending_length = body_length
            else:
                events.append(message)

    def _find_head_end(self, buffer: bytes | bytearray, start: int) -> int:
        """Return the offset just past the empty line, or -1 if not yet seen.

        The empty line is a line end right after another one: ``\\n\\r\\n``
        or ``\\n\\n``. Bytes already searched are not searched again.
        """
        scan = start + self._scanned
        crlf = buffer.find(b"\n\r\n", scan)
        limit = crlf + 1 if crlf >= 0 else len(buffer)
        bare = buffer.find(b"\n\n", scan, limit)
        if bare >= 0:
            end = bare + 2
        elif crlf >= 0:
            end = crlf + 3
        else:
            if len(buffer) - start > self.max_header_bytes:
                raise HeaderTooLarge(
                    f"no end of header block in {self.max_header_bytes} bytes"
                )
            self._scanned = max(0, len(buffer) - start - 2)
            return -1

        self._scanned = 0
        if end - start > self.max_header_bytes:
            raise HeaderTooLarge(
                f"header block of {end - start} bytes over {self.max_header_bytes}"
            )
        return end

    def _parse_head(self, head: bytes) -> tuple[Request | Response, int]:
        """Parse a start line and header block; return it and the body size."""
        text = head.decode("utf-8", "surrogateescape")
        lines = text.split("\n")
        # The head ends "\n" + empty line + "\n": split leaves "" last and
        # the empty line ("" or "\r") before it.
        start_line = lines[0]
        end_line = lines[-2] + "\n"
        fields, lengths = _parse_fields(lines, len(lines) - 2)

        start = start_line[:-1] if start_line.endswith("\r") else start_line
        headers = Headers._from_wire(fields)
        message: Request | Response
        if start.startswith("RTSP/"):
            message = _parse_status_line(start, headers)
            key: tuple[object, ...] = (message.version, message.status, message.reason)
        else:
            message = _parse_request_line(start, headers)
            key = (message.method, message.uri, message.version)
        message._wire = _Wire(key, start_line + "\n", end_line, head)

        return message, self._body_length(lengths)

    def _body_length(self, lengths: list[str]) -> int:
        """Check the Content-Length values (RFC 2326 12.14) against the cap."""
        if not lengths:
            return 0
        value = lengths[0]
        if any(other != value for other in lengths):
            raise RemoteProtocolError(f"conflicting Content-Length {lengths!r}")
        if not (value.isascii() and value.isdigit()):
            raise RemoteProtocolError(f"bad Content-Length {value!r}")
        if len(value) > _MAX_LENGTH_DIGITS or int(value) > self.max_body_bytes:
            raise BodyTooLarge(
                f"Content-Length {value} over {self.max_body_bytes} bytes"
            )
        return int(value)


def _parse_fields(lines: list[str], stop: int) -> tuple[list[_Field], list[str]]:
    """Parse header lines ``lines[1:stop]``; also return Content-Length values.

    RFC 2326 15.1 (via RFC 2616 2.2): a line starting with space or tab
    continues the previous field, and the pieces join with one space.
    """
    fields: list[_Field] = []
    lengths: list[str] = []
    for line in lines[1:stop]:
        # Line ends are "\n" or "\r\n"; a value never ends in CR, so
        # stripping CR with the blanks drops the line end's CR.
        first = line[:1]
        if first == " " or first == "\t":
            if not fields:
                raise RemoteProtocolError("continuation line before any field")
            key, name, value, previous = fields[-1]
            more = line.strip(" \t\r")
            if more:
                value = f"{value} {more}" if value else more
            fields[-1] = (key, name, value, f"{previous}{line}\n")
            if key == "content-length":
                lengths[-1] = value
            continue

        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not name or " " in name or "\t" in name:
            raise RemoteProtocolError(f"malformed header line {line[:80]!r}")
        key = name.lower()
        value = value.strip(" \t\r")
        fields.append((key, name, value, line + "\n"))
        if key == "content-length":
            lengths.append(value)
    return fields, lengths


def _check_version(version: str, line: str) -> None:
    if version in SUPPORTED_VERSIONS:
        return
    if _VERSION_LIKE.fullmatch(version):
        raise UnsupportedVersion(f"unsupported version {version!r}")
    raise RemoteProtocolError(f"malformed start line {line[:80]!r}")


def _parse_request_line(line: str, headers: Headers) -> Request:
    """RFC 2326 6.1: Method SP Request-URI SP RTSP-Version CRLF."""
    parts = line.split(" ")
    if len(parts) != 3 or not parts[1] or _TOKEN.fullmatch(parts[0]) is None:
        raise RemoteProtocolError(f"malformed request line {line[:80]!r}")
    method, uri, version = parts
    _check_version(version, line)
    return Request(method, uri, version, headers)


def _parse_status_line(line: str, headers: Headers) -> Response:
    """RFC 2326 7.1: RTSP-Version SP Status-Code SP Reason-Phrase CRLF.

    A missing reason phrase is accepted; some servers send none.
    """
    parts = line.split(" ", 2)
    code = parts[1] if len(parts) > 1 else ""
    if len(code) != 3 or not (code.isascii() and code.isdigit()):
        raise RemoteProtocolError(f"malformed status line {line[:80]!r}")
    version = parts[0]
    _check_version(version, line)
    reason = parts[2] if len(parts) > 2 else ""
    return Response(version, int(code), reason, headers)
