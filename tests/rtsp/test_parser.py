"""Tests of the incremental RTSP parser: framing, events, limits, errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hostednat.rtsp.errors import (
    BodyTooLarge,
    HeaderTooLarge,
    RemoteProtocolError,
    RtspError,
    UnsupportedVersion,
)
from hostednat.rtsp.message import Headers, InterleavedFrame, Request, Response
from hostednat.rtsp.parser import Event, RtspParser


def parse_one(data: bytes) -> Request | Response:
    events = RtspParser().feed(data)
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, Request | Response)
    return event


def feed_in_pieces(data: bytes, cuts: list[int]) -> list[Event]:
    parser = RtspParser()
    events: list[Event] = []
    previous = 0
    for cut in [*sorted(cuts), len(data)]:
        events += parser.feed(data[previous:cut])
        previous = cut
    assert parser.buffered == 0
    return events


REQUESTS = [
    pytest.param(
        b"OPTIONS rtsp://192.0.2.1/live RTSP/1.0\r\nCSeq: 1\r\n\r\n",
        ("OPTIONS", "rtsp://192.0.2.1/live", "RTSP/1.0"),
        [("CSeq", "1")],
        b"",
        id="options-crlf",
    ),
    pytest.param(
        b"OPTIONS * RTSP/1.0\r\n\r\n",
        ("OPTIONS", "*", "RTSP/1.0"),
        [],
        b"",
        id="no-headers",
    ),
    pytest.param(
        b"GET_PARAMETER rtsp://192.0.2.1/a RTSP/1.0\nCSeq: 9\nSession: 42\n\n",
        ("GET_PARAMETER", "rtsp://192.0.2.1/a", "RTSP/1.0"),
        [("CSeq", "9"), ("Session", "42")],
        b"",
        id="bare-lf",
    ),
    pytest.param(
        b"PLAY rtsp://192.0.2.1/a RTSP/1.0\r\nCSeq: 5\nRange: npt=0-\r\n\n",
        ("PLAY", "rtsp://192.0.2.1/a", "RTSP/1.0"),
        [("CSeq", "5"), ("Range", "npt=0-")],
        b"",
        id="mixed-line-ends",
    ),
    pytest.param(
        b"SETUP rtsp://192.0.2.1/a RTSP/1.0\r\nCSeq: 3\r\n"
        b"Transport: RTP/AVP;unicast;\r\n  client_port=5000-5001\r\n"
        b"X-Note: one\r\n\ttwo  \r\n three\r\n\r\n",
        ("SETUP", "rtsp://192.0.2.1/a", "RTSP/1.0"),
        [
            ("CSeq", "3"),
            ("Transport", "RTP/AVP;unicast; client_port=5000-5001"),
            ("X-Note", "one two three"),
        ],
        b"",
        id="continuation-lines",
    ),
    pytest.param(
        b"SET_PARAMETER rtsp://192.0.2.1/a RTSP/1.0\r\nCSeq: 7\r\n"
        b"Content-Type: text/parameters\r\nContent-Length: 12\r\n\r\n"
        b"volume: 0.5\n",
        ("SET_PARAMETER", "rtsp://192.0.2.1/a", "RTSP/1.0"),
        [
            ("CSeq", "7"),
            ("Content-Type", "text/parameters"),
            ("Content-Length", "12"),
        ],
        b"volume: 0.5\n",
        id="content-length-body",
    ),
    pytest.param(
        b"OPTIONS * RTSP/2.0\r\nCSeq:1\r\nContent-Length:   0  \r\nX-Empty:\r\n\r\n",
        ("OPTIONS", "*", "RTSP/2.0"),
        [("CSeq", "1"), ("Content-Length", "0"), ("X-Empty", "")],
        b"",
        id="rtsp2-odd-spacing",
    ),
    pytest.param(
        b"DESCRIBE rtsp://[2001:db8::1]:554/a RTSP/1.0\r\nCSeq : 2\r\n\r\n",
        ("DESCRIBE", "rtsp://[2001:db8::1]:554/a", "RTSP/1.0"),
        [("CSeq", "2")],
        b"",
        id="space-before-colon",
    ),
]


@pytest.mark.parametrize(("data", "start", "fields", "body"), REQUESTS)
def test_request_table(
    data: bytes, start: tuple[str, str, str], fields: list[tuple[str, str]], body: bytes
) -> None:
    """Each request parses to its start line, fields in order, and body."""
    request = parse_one(data)

    assert isinstance(request, Request)
    assert (request.method, request.uri, request.version) == start
    assert list(request.headers) == fields
    assert request.body == body


@pytest.mark.parametrize(("data", "start", "fields", "body"), REQUESTS)
def test_request_table_reserializes_exactly(
    data: bytes, start: tuple[str, str, str], fields: list[tuple[str, str]], body: bytes
) -> None:
    """An unchanged parsed request serializes to the bytes it came from."""
    assert parse_one(data).serialize() == data


RESPONSES = [
    pytest.param(
        b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n",
        ("RTSP/1.0", 200, "OK"),
        b"",
        id="ok",
    ),
    pytest.param(
        b"RTSP/1.0 454 Session Not Found\r\nCSeq: 4\r\n\r\n",
        ("RTSP/1.0", 454, "Session Not Found"),
        b"",
        id="reason-with-spaces",
    ),
    pytest.param(
        b"RTSP/1.0 200\r\nCSeq: 2\r\n\r\n",
        ("RTSP/1.0", 200, ""),
        b"",
        id="no-reason",
    ),
    pytest.param(
        b"RTSP/2.0 200 OK\nCSeq: 2\nContent-Length: 4\n\nv=0\n",
        ("RTSP/2.0", 200, "OK"),
        b"v=0\n",
        id="rtsp2-bare-lf-body",
    ),
]


@pytest.mark.parametrize(("data", "start", "body"), RESPONSES)
def test_response_table(data: bytes, start: tuple[str, int, str], body: bytes) -> None:
    """Each response parses to version, status, reason and body, and back."""
    response = parse_one(data)

    assert isinstance(response, Response)
    assert (response.version, response.status, response.reason) == start
    assert response.body == body
    assert response.serialize() == data


def test_repeated_headers_are_kept_in_order_and_found_in_any_case() -> None:
    """Repeats stay in received order; lookups ignore the name's case."""
    request = parse_one(
        b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nVia: RTSP/1.0 a\r\n"
        b"User-Agent: x\r\nvia: RTSP/1.0 b\r\nVIA: RTSP/1.0 c\r\n\r\n"
    )

    assert request.headers.get_all("VIA") == ["RTSP/1.0 a", "RTSP/1.0 b", "RTSP/1.0 c"]
    assert request.headers.get("via") == "RTSP/1.0 a"
    assert request.cseq == "1"
    assert "user-agent" in request.headers


# The pieces of a stream; the empty lines between messages are the ones the
# parser skips, every other piece is one event.
PIPELINE_PIECES = [
    b"\r\n",
    b"OPTIONS rtsp://192.0.2.1/a RTSP/1.0\r\nCSeq: 1\r\n\r\n",
    b"$\x00\x00\x04\x80\x60\x00\x01",
    b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: 5\r\n\r\nhello",
    b"\r\n\r\n",
    b"$\x01\x00\x00",
    b"$\x02\x00\x03$\r\n",
    b"ANNOUNCE rtsp://192.0.2.1/a RTSP/1.0\nCSeq: 1\nContent-Length: 3\n\n$\r\n",
    b"\n",
    b"TEARDOWN rtsp://192.0.2.1/a RTSP/1.0\r\nCSeq: 2\r\nSession: 7\r\n\r\n",
]
PIPELINE = b"".join(PIPELINE_PIECES)


def expected_pipeline() -> list[Event]:
    return RtspParser().feed(PIPELINE)


def test_pipeline_events_in_order() -> None:
    """Requests, responses and frames in one stream come out in order."""
    events = expected_pipeline()

    kinds = [type(event).__name__ for event in events]
    assert kinds == [
        "Request",
        "InterleavedFrame",
        "Response",
        "InterleavedFrame",
        "InterleavedFrame",
        "Request",
        "Request",
    ]
    assert events[1] == InterleavedFrame(0, b"\x80\x60\x00\x01")
    assert events[3] == InterleavedFrame(1, b"")
    assert events[4] == InterleavedFrame(2, b"$\r\n")
    assert isinstance(events[2], Response)
    assert events[2].body == b"hello"
    assert isinstance(events[5], Request)
    assert events[5].body == b"$\r\n"


@pytest.mark.parametrize("cut", range(len(PIPELINE) + 1))
def test_pipeline_split_at_every_offset(cut: int) -> None:
    """Splitting the stream in two anywhere yields the same events."""
    assert feed_in_pieces(PIPELINE, [cut]) == expected_pipeline()


def test_pipeline_one_byte_at_a_time() -> None:
    """Feeding one byte at a time yields the same events."""
    assert feed_in_pieces(PIPELINE, list(range(len(PIPELINE)))) == expected_pipeline()


@given(st.lists(st.integers(0, len(PIPELINE)), max_size=20))
def test_pipeline_any_chunking(cuts: list[int]) -> None:
    """Any chunking of the stream yields the same events."""
    assert feed_in_pieces(PIPELINE, cuts) == expected_pipeline()


def test_pipeline_reserializes_to_the_stream_without_stray_lines() -> None:
    """Serializing every event rebuilds the stream minus the empty lines."""
    rebuilt = [event.serialize() for event in expected_pipeline()]

    assert rebuilt == [piece for piece in PIPELINE_PIECES if piece.strip(b"\r\n")]


def test_largest_interleaved_frame() -> None:
    """A frame with the 16-bit maximum of 65535 payload bytes parses."""
    payload = bytes(range(256)) * 255 + bytes(range(255))
    data = b"$\x07\xff\xff" + payload

    assert RtspParser().feed(data) == [InterleavedFrame(7, payload)]


def test_frame_header_split_waits_for_length() -> None:
    """A frame cut inside its four-byte header is held until complete."""
    parser = RtspParser()

    assert parser.feed(b"$\x00") == []
    assert parser.feed(b"\x00") == []
    assert parser.buffered == 3
    assert parser.feed(b"\x02ab") == [InterleavedFrame(0, b"ab")]
    assert parser.buffered == 0


def test_body_arriving_in_many_chunks() -> None:
    """A large body fed in small chunks is assembled once complete."""
    body = b"x" * 100_000
    head = b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: 100000\r\n\r\n"
    parser = RtspParser()

    events = parser.feed(head)
    for offset in range(0, len(body) - 1000, 1000):
        events += parser.feed(body[offset : offset + 1000])
    assert events == []
    assert parser.buffered == len(head) + len(body) - 1000

    events = parser.feed(body[-1000:])
    assert len(events) == 1
    assert isinstance(events[0], Response)
    assert events[0].body == body


def test_request_then_response_on_same_stream() -> None:
    """A server-to-client request and a response share one stream."""
    events = RtspParser().feed(
        b"RTSP/1.0 200 OK\r\nCSeq: 3\r\n\r\n"
        b"ANNOUNCE rtsp://192.0.2.1/a RTSP/1.0\r\nCSeq: 10\r\n\r\n"
    )

    assert [type(event) for event in events] == [Response, Request]


ERRORS = [
    pytest.param(b"GARBAGE\r\n\r\n", RemoteProtocolError, 400, id="one-word"),
    pytest.param(b"\x16\x03\x01\x02\x00\n\n", RemoteProtocolError, 400, id="binary"),
    pytest.param(b"OPTIONS rtsp://a\r\n\r\n", RemoteProtocolError, 400, id="two-parts"),
    pytest.param(
        b"OPTIONS  rtsp://a RTSP/1.0\r\n\r\n", RemoteProtocolError, 400, id="two-spaces"
    ),
    pytest.param(
        b"OPT(ONS * RTSP/1.0\r\n\r\n", RemoteProtocolError, 400, id="method-not-token"
    ),
    pytest.param(b"OPTIONS * RTSP/1.1\r\n\r\n", UnsupportedVersion, 505, id="rtsp-1.1"),
    pytest.param(b"GET / HTTP/1.1\r\n\r\n", UnsupportedVersion, 505, id="http"),
    pytest.param(b"OPTIONS * RTSP\r\n\r\n", RemoteProtocolError, 400, id="no-version"),
    pytest.param(b"RTSP/3.0 200 OK\r\n\r\n", UnsupportedVersion, 505, id="rtsp-3"),
    pytest.param(b"RTSP/1.0 2000 OK\r\n\r\n", RemoteProtocolError, 400, id="status"),
    pytest.param(b"RTSP/1.0\r\n\r\n", RemoteProtocolError, 400, id="no-status"),
    pytest.param(
        b"OPTIONS * RTSP/1.0\r\nCSeq 1\r\n\r\n",
        RemoteProtocolError,
        400,
        id="no-colon",
    ),
    pytest.param(
        b"OPTIONS * RTSP/1.0\r\nC Seq: 1\r\n\r\n",
        RemoteProtocolError,
        400,
        id="space-in-name",
    ),
    pytest.param(
        b"OPTIONS * RTSP/1.0\r\n: 1\r\n\r\n", RemoteProtocolError, 400, id="no-name"
    ),
    pytest.param(
        b"OPTIONS * RTSP/1.0\r\n continued\r\n\r\n",
        RemoteProtocolError,
        400,
        id="continuation-first",
    ),
    pytest.param(
        b"ANNOUNCE * RTSP/1.0\r\nContent-Length: ten\r\n\r\n",
        RemoteProtocolError,
        400,
        id="length-not-number",
    ),
    pytest.param(
        b"ANNOUNCE * RTSP/1.0\r\nContent-Length: -1\r\n\r\n",
        RemoteProtocolError,
        400,
        id="length-negative",
    ),
    pytest.param(
        b"ANNOUNCE * RTSP/1.0\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        RemoteProtocolError,
        400,
        id="length-conflict",
    ),
    pytest.param(
        b"ANNOUNCE * RTSP/1.0\r\nContent-Length: 1048577\r\n\r\n",
        BodyTooLarge,
        413,
        id="body-over-cap",
    ),
    pytest.param(
        b"ANNOUNCE * RTSP/1.0\r\nContent-Length: " + b"9" * 40 + b"\r\n\r\n",
        BodyTooLarge,
        413,
        id="length-huge",
    ),
    pytest.param(
        b"OPTIONS * RTSP/1.0\r\nX-Big: " + b"a" * 17000 + b"\r\n\r\n",
        HeaderTooLarge,
        400,
        id="header-over-cap",
    ),
    pytest.param(
        b"OPTIONS * RTSP/1.0\r\nX-Big: " + b"a" * 17000,
        HeaderTooLarge,
        400,
        id="header-over-cap-unterminated",
    ),
]


@pytest.mark.parametrize(("data", "error", "status"), ERRORS)
def test_error_table(data: bytes, error: type[RtspError], status: int) -> None:
    """Each malformed input raises its error class with its status hint."""
    with pytest.raises(error) as caught:
        RtspParser().feed(data)

    assert caught.value.status == status
    assert isinstance(caught.value, RemoteProtocolError)


@pytest.mark.parametrize(("data", "error", "status"), ERRORS)
def test_parser_stays_failed(data: bytes, error: type[RtspError], status: int) -> None:
    """After an error every further feed raises the same error class."""
    parser = RtspParser()
    with pytest.raises(error):
        parser.feed(data)

    with pytest.raises(error) as again:
        parser.feed(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n")
    assert again.value.status == status


def test_header_cap_applies_before_the_empty_line() -> None:
    """An endless header block fails once over the cap, not at the end."""
    parser = RtspParser(max_header_bytes=64)
    parser.feed(b"OPTIONS * RTSP/1.0\r\nX: " + b"a" * 40)

    with pytest.raises(HeaderTooLarge):
        parser.feed(b"a" * 30)


def test_header_exactly_at_cap_is_accepted() -> None:
    """A header block of exactly max_header_bytes bytes parses."""
    data = b"OPTIONS * RTSP/1.0\r\nX: " + b"a" * 10 + b"\r\n\r\n"

    events = RtspParser(max_header_bytes=len(data)).feed(data)

    assert len(events) == 1


def test_body_cap_applies_before_the_body() -> None:
    """An over-cap Content-Length fails as soon as the head is complete."""
    parser = RtspParser(max_body_bytes=10)

    with pytest.raises(BodyTooLarge) as caught:
        parser.feed(b"ANNOUNCE * RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 11\r\n\r\n")
    assert caught.value.status == 413


def test_body_exactly_at_cap_is_accepted() -> None:
    """A body of exactly max_body_bytes bytes parses."""
    parser = RtspParser(max_body_bytes=3)

    events = parser.feed(b"ANNOUNCE * RTSP/1.0\r\nContent-Length: 3\r\n\r\nabc")

    assert len(events) == 1


def test_incomplete_message_is_buffered() -> None:
    """Bytes of a message not yet complete are held and counted."""
    parser = RtspParser()
    head = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n"

    assert parser.feed(head) == []
    assert parser.buffered == len(head)
    assert len(parser.feed(b"\r\n")) == 1
    assert parser.buffered == 0


def test_headers_with_undecodable_bytes_survive() -> None:
    """Bytes that are not UTF-8 in a header come back out unchanged."""
    data = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: box\xff\xfe\r\n\r\n"

    request = parse_one(data)
    request.headers.set("CSeq", "2")

    assert request.serialize() == data.replace(b"CSeq: 1", b"CSeq: 2")


_TCHAR = "!#$%&'*+.^_`|~-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
tokens = st.text(alphabet=_TCHAR, min_size=1, max_size=10)
field_values = st.text(
    alphabet=st.characters(exclude_categories=("Cs", "Cc"), include_characters="\t"),
    max_size=30,
).map(lambda value: value.strip(" \t"))
fields = st.lists(
    st.tuples(
        tokens.filter(lambda name: name.lower() != "content-length"), field_values
    ),
    max_size=8,
)
versions = st.sampled_from(["RTSP/1.0", "RTSP/2.0"])
bodies = st.binary(max_size=64)


@st.composite
def messages(draw: st.DrawFn) -> Request | Response:
    message: Request | Response
    if draw(st.booleans()):
        uri = draw(st.text(alphabet=_TCHAR + ":/?=[]@", min_size=1, max_size=30))
        method = draw(tokens.filter(lambda name: name[0] != "$"))
        message = Request(method, uri, draw(versions), Headers(draw(fields)))
    else:
        reason = draw(st.text(alphabet=_TCHAR + " ", max_size=20))
        status = draw(st.integers(100, 999))
        message = Response(draw(versions), status, reason, Headers(draw(fields)))
    message.set_body(draw(bodies))
    return message


@given(st.lists(messages(), min_size=1, max_size=4), st.lists(st.integers(0, 2000)))
def test_generated_messages_round_trip(
    generated: list[Request | Response], cuts: list[int]
) -> None:
    """Built messages serialize, parse back equal, and serialize the same."""
    stream = b"".join(message.serialize() for message in generated)

    events = feed_in_pieces(stream, [cut for cut in cuts if cut <= len(stream)])

    assert events == generated
    assert b"".join(event.serialize() for event in events) == stream
