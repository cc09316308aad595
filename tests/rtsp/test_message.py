"""Tests of RTSP message objects: headers, serialization, built answers."""

from __future__ import annotations

import pytest

from hostednat.rtsp.errors import LocalProtocolError
from hostednat.rtsp.message import (
    Headers,
    InterleavedFrame,
    Request,
    Response,
    make_response,
)
from hostednat.rtsp.parser import RtspParser

SETUP = (
    b"SETUP rtsp://192.0.2.1/a/track1 RTSP/1.0\r\n"
    b"CSeq: 3\r\n"
    b"Transport: RTP/AVP;unicast;\r\n client_port=5000-5001\r\n"
    b"user-agent: box\r\n"
    b"Via: RTSP/1.0 a\r\n"
    b"Via: RTSP/1.0 b\r\n"
    b"\r\n"
)


def parsed(data: bytes = SETUP) -> Request:
    (request,) = RtspParser().feed(data)
    assert isinstance(request, Request)
    return request


def test_headers_get_missing_is_none() -> None:
    """get() of an absent name is None and get_all() is empty."""
    headers = Headers([("CSeq", "1")])

    assert headers.get("Session") is None
    assert headers.get_all("Session") == []
    assert "Session" not in headers
    assert 42 not in headers


def test_headers_set_replaces_first_in_place_and_drops_repeats() -> None:
    """set() keeps the first field's position and removes later repeats."""
    headers = Headers([("A", "1"), ("Via", "x"), ("B", "2"), ("VIA", "y")])

    headers.set("via", "z")

    assert list(headers) == [("A", "1"), ("via", "z"), ("B", "2")]


def test_headers_set_appends_when_absent() -> None:
    """set() of a new name appends it at the end."""
    headers = Headers([("A", "1")])

    headers.set("Session", "42")

    assert list(headers) == [("A", "1"), ("Session", "42")]


def test_headers_add_and_remove() -> None:
    """add() appends a repeat; remove() drops every field of that name."""
    headers = Headers([("Via", "a")])

    headers.add("Via", "b")
    assert headers.get_all("via") == ["a", "b"]
    assert len(headers) == 2

    headers.remove("VIA")
    headers.remove("Absent")
    assert len(headers) == 0


def test_headers_copy_is_independent() -> None:
    """A copy changes without touching the original."""
    headers = Headers([("CSeq", "1")])
    copy = headers.copy()

    copy.set("CSeq", "2")

    assert headers.get("CSeq") == "1"
    assert copy.get("CSeq") == "2"


def test_headers_equality_ignores_name_case() -> None:
    """Headers compare by case-insensitive name and value, in order."""
    assert Headers([("cseq", "1")]) == Headers([("CSeq", "1")])
    assert Headers([("CSeq", "1")]) != Headers([("CSeq", "2")])
    assert Headers([("A", "1"), ("B", "2")]) != Headers([("B", "2"), ("A", "1")])


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Evil", "a\r\nSession: 1"),
        ("X-Evil", "a\nb"),
        ("X-Evil", "a\0b"),
        ("Bad Name", "1"),
        ("Bad:Name", "1"),
        ("", "1"),
    ],
)
def test_headers_refuse_fields_that_break_the_line(name: str, value: str) -> None:
    """Names that are not tokens and values with line breaks are refused."""
    with pytest.raises(LocalProtocolError):
        Headers().add(name, value)
    with pytest.raises(LocalProtocolError):
        Headers().set(name, value)


def test_unchanged_parsed_request_is_exact() -> None:
    """A parsed request serializes back to identical bytes."""
    assert parsed().serialize() == SETUP


def test_changed_field_rewritten_others_kept_raw() -> None:
    """Only a changed field is rewritten; untouched ones keep raw bytes."""
    request = parsed()

    request.headers.set("Transport", "RTP/AVP;unicast;client_port=7000-7001")

    assert request.serialize() == SETUP.replace(
        b"Transport: RTP/AVP;unicast;\r\n client_port=5000-5001\r\n",
        b"Transport: RTP/AVP;unicast;client_port=7000-7001\r\n",
    )


def test_added_and_removed_fields() -> None:
    """Removed fields vanish and added ones go last as ``Name: value``."""
    request = parsed()

    request.headers.remove("Via")
    request.headers.add("Via", "RTSP/1.0 hostednat")

    assert request.serialize() == SETUP.replace(
        b"Via: RTSP/1.0 a\r\nVia: RTSP/1.0 b\r\n", b"Via: RTSP/1.0 hostednat\r\n"
    )


def test_changed_uri_keeps_raw_fields() -> None:
    """A new Request-URI rewrites the start line and keeps the fields."""
    request = parsed()

    request.uri = "rtsp://198.51.100.7/a/track1"

    assert request.serialize() == SETUP.replace(b"192.0.2.1", b"198.51.100.7")


def test_bare_lf_message_keeps_its_line_ends_when_a_field_changes() -> None:
    """Untouched lines keep bare LF; the changed one is written with CRLF."""
    request = parsed(b"PLAY rtsp://192.0.2.1/a RTSP/1.0\nCSeq: 5\nSession: 1\n\n")

    request.headers.set("CSeq", "6")

    assert request.serialize() == (
        b"PLAY rtsp://192.0.2.1/a RTSP/1.0\nCSeq: 6\r\nSession: 1\n\n"
    )


def test_set_body_updates_content_length() -> None:
    """set_body() stores the body and writes its length."""
    response = Response("RTSP/1.0", 200, "OK", Headers([("CSeq", "2")]))

    response.set_body(b"v=0\r\n")

    assert response.serialize() == (
        b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: 5\r\n\r\nv=0\r\n"
    )


def test_set_body_on_parsed_response_keeps_position() -> None:
    """A new body rewrites Content-Length where it stood."""
    (response,) = RtspParser().feed(
        b"RTSP/1.0 200 OK\r\nContent-Length: 3\r\nCSeq: 2\r\n\r\nabc"
    )
    assert isinstance(response, Response)

    response.set_body(b"abcdef")

    assert response.serialize() == (
        b"RTSP/1.0 200 OK\r\nContent-Length: 6\r\nCSeq: 2\r\n\r\nabcdef"
    )


def test_empty_body_without_content_length_adds_none() -> None:
    """set_body(b"") on a message without Content-Length adds no field."""
    request = Request("OPTIONS", "*", "RTSP/1.0", Headers([("CSeq", "1")]))

    request.set_body(b"")

    assert "Content-Length" not in request.headers


def test_built_request_serializes() -> None:
    """A request built in code serializes with CRLF line ends."""
    request = Request(
        "TEARDOWN", "rtsp://192.0.2.1/a", "RTSP/1.0", Headers([("CSeq", "9")])
    )

    assert request.serialize() == (
        b"TEARDOWN rtsp://192.0.2.1/a RTSP/1.0\r\nCSeq: 9\r\n\r\n"
    )
    assert request.cseq == "9"


@pytest.mark.parametrize(
    "request_",
    [
        Request("SET UP", "*", "RTSP/1.0", Headers()),
        Request("$ETUP", "*", "RTSP/1.0", Headers()),
        Request("SET(UP", "*", "RTSP/1.0", Headers()),
        Request("SETUP", "rtsp://a/b c", "RTSP/1.0", Headers()),
        Request("SETUP", "", "RTSP/1.0", Headers()),
        Request("SETUP", "*", "RTSP/1.0\r\nX: 1", Headers()),
    ],
)
def test_illegal_start_line_is_refused(request_: Request) -> None:
    """A start line that would split or inject lines is refused."""
    with pytest.raises(LocalProtocolError):
        request_.serialize()


@pytest.mark.parametrize(
    "response",
    [
        Response("RTSP/1.0", 99, "Low", Headers()),
        Response("RTSP/1.0", 200, "OK\r\nX: 1", Headers()),
    ],
)
def test_illegal_status_line_is_refused(response: Response) -> None:
    """A status out of range or a reason with a line break is refused."""
    with pytest.raises(LocalProtocolError):
        response.serialize()


def test_interleaved_frame_serializes() -> None:
    """A frame is ``$``, channel, 16-bit length, payload."""
    assert InterleavedFrame(3, b"abc").serialize() == b"$\x03\x00\x03abc"


@pytest.mark.parametrize(
    "frame", [InterleavedFrame(256, b""), InterleavedFrame(0, b"x" * 65536)]
)
def test_interleaved_frame_limits(frame: InterleavedFrame) -> None:
    """A channel over 255 or a payload over 65535 bytes is refused."""
    with pytest.raises(LocalProtocolError):
        frame.serialize()


def test_make_response_copies_cseq_and_session() -> None:
    """A generated answer carries the request's CSeq, Session and version."""
    request = parsed(
        b"PLAY rtsp://192.0.2.1/a RTSP/2.0\r\nCSeq: 12\r\nSession: ab12;x=1\r\n\r\n"
    )

    response = make_response(request, 454)

    assert response.serialize() == (
        b"RTSP/2.0 454 Session Not Found\r\nCSeq: 12\r\nSession: ab12;x=1\r\n\r\n"
    )


def test_make_response_with_headers_and_body() -> None:
    """Extra fields follow CSeq, and a body gets its Content-Length."""
    request = parsed()

    response = make_response(
        request,
        503,
        headers=[("Retry-After", "5"), ("Content-Type", "text/plain")],
        body=b"busy",
    )

    assert response.serialize() == (
        b"RTSP/1.0 503 Service Unavailable\r\nCSeq: 3\r\nRetry-After: 5\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 4\r\n\r\nbusy"
    )


def test_make_response_unknown_version_and_reason() -> None:
    """An unknown version is answered in 1.0; an own reason is used as is."""
    request = Request("OPTIONS", "*", "RTSP/1.1", Headers())

    response = make_response(request, 461, "Only UDP Unicast")

    assert response.serialize() == b"RTSP/1.0 461 Only UDP Unicast\r\n\r\n"
