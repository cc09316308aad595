"""Golden tests on messages captured from ffmpeg, GStreamer and gst-rtsp-server.

See ``tests/data/rtsp/README.rst`` for how each file was recorded; the
``handwritten_*`` files are IPTV box dialects written by hand.
"""

from __future__ import annotations

import pytest

from hostednat.rtsp.headers import parse_rtp_info, parse_session
from hostednat.rtsp.message import InterleavedFrame, Request, Response
from hostednat.rtsp.parser import Event, RtspParser
from hostednat.rtsp.sdp import match_media, parse_sdp
from hostednat.rtsp.transport import PortRange, parse_transport

from .captures import load, names, parse

ALL = names()


def single_request(name: str) -> Request:
    (message,) = parse(load(name))
    assert isinstance(message, Request)
    return message


def single_response(name: str) -> Response:
    (message,) = parse(load(name))
    assert isinstance(message, Response)
    return message


def requests(events: list[Event]) -> list[Request]:
    return [event for event in events if isinstance(event, Request)]


def responses(events: list[Event]) -> list[Response]:
    return [event for event in events if isinstance(event, Response)]


def test_there_are_captures() -> None:
    """The capture directory holds the files these tests are about."""
    assert len(ALL) >= 30
    assert "setup_ffmpeg_udp.txt" in ALL


@pytest.mark.parametrize("name", ALL)
def test_capture_reserializes_exactly(name: str) -> None:
    """Every capture parses completely and serializes to the same bytes."""
    data = load(name)

    events = parse(data)

    assert events
    assert b"".join(event.serialize() for event in events) == data


@pytest.mark.parametrize("name", ALL)
def test_capture_byte_by_byte(name: str) -> None:
    """Feeding a capture one byte at a time yields the same events."""
    data = load(name)
    parser = RtspParser()

    events: list[Event] = []
    for offset in range(len(data)):
        events += parser.feed(data[offset : offset + 1])

    assert events == parse(data)
    assert parser.buffered == 0


@pytest.mark.parametrize(
    ("name", "transport_id", "lower", "ports", "channels"),
    [
        ("setup_ffmpeg_udp.txt", "RTP/AVP/UDP", "UDP", PortRange(12666, 12667), None),
        (
            "setup_ffmpeg_udp_second_stream.txt",
            "RTP/AVP/UDP",
            "UDP",
            PortRange(12668, 12669),
            None,
        ),
        ("setup_gst_udp.txt", "RTP/AVP", "UDP", PortRange(59962, 59963), None),
        ("setup_gst_udp_rtsp2.txt", "RTP/AVP", "UDP", PortRange(50694, 50695), None),
        ("setup_ffmpeg_tcp.txt", "RTP/AVP/TCP", "TCP", None, PortRange(0, 1)),
        ("setup_gst_tcp.txt", "RTP/AVP/TCP", "TCP", None, PortRange(0, 1)),
    ],
)
def test_client_setup_transports(
    name: str,
    transport_id: str,
    lower: str,
    ports: PortRange | None,
    channels: PortRange | None,
) -> None:
    """Each real client's SETUP offers one unicast spec of the known shape."""
    request = single_request(name)
    assert request.method == "SETUP"

    (spec,) = parse_transport(request.headers.get("Transport") or "")

    assert spec.transport_id == transport_id
    assert spec.is_unicast
    assert spec.lower_transport == lower
    assert spec.client_port == ports
    assert spec.interleaved == channels


@pytest.mark.parametrize(
    ("name", "client", "server", "channels", "ssrc"),
    [
        (
            "setup_reply_gst_rtsp_server.txt",
            PortRange(59962, 59963),
            PortRange(54956, 54957),
            None,
            "547EA9DC",
        ),
        (
            "setup_reply_gst_rtsp_server_rtsp2.txt",
            PortRange(50694, 50695),
            PortRange(33250, 33251),
            None,
            "4F48290C",
        ),
        (
            "setup_reply_gst_rtsp_server_tcp.txt",
            None,
            None,
            PortRange(0, 1),
            "7D47A83B",
        ),
    ],
)
def test_server_setup_reply_transports(
    name: str,
    client: PortRange | None,
    server: PortRange | None,
    channels: PortRange | None,
    ssrc: str,
) -> None:
    """gst-rtsp-server echoes the ports, adds its own, ssrc and quoted mode."""
    response = single_response(name)
    assert response.status == 200

    (spec,) = parse_transport(response.headers.get("Transport") or "")

    assert spec.client_port == client
    assert spec.server_port == server
    assert spec.interleaved == channels
    assert spec.ssrc == ssrc
    assert spec.mode == "PLAY"
    assert spec.params[-1] == ("mode", '"PLAY"')
    assert spec.source is None and spec.destination is None
    assert parse_session(response.headers.get("Session") or "")[1] is None


def test_rewriting_a_captured_setup_changes_only_transport() -> None:
    """Rewriting client_port in a real SETUP leaves every other byte alone."""
    data = load("setup_gst_udp.txt")
    request = single_request("setup_gst_udp.txt")
    (spec,) = parse_transport(request.headers.get("Transport") or "")

    spec.set_ports("client_port", PortRange(30000, 30001))
    request.headers.set("Transport", str(spec))

    assert request.serialize() == data.replace(b"59962-59963", b"30000-30001")


def test_describe_reply_sdp_matches_the_setups() -> None:
    """The captured SDP maps each captured SETUP URI to its media."""
    describe = single_response("describe_reply_gst_rtsp_server.txt")
    base = describe.headers.get("Content-Base") or ""
    assert int(describe.headers.get("Content-Length") or 0) == len(describe.body)

    first = single_request("setup_ffmpeg_udp.txt")
    second = single_request("setup_ffmpeg_udp_second_stream.txt")

    sdp = parse_sdp(describe.body)
    video = match_media(sdp, base, first.uri)
    audio = match_media(sdp, base, second.uri)

    assert sdp.control == "*"
    assert [(m.media, m.control, m.rtpmaps) for m in sdp.media] == [
        ("video", "stream=0", ("26 JPEG/90000",)),
        ("audio", "stream=1", ("96 L16/8000/1",)),
    ]
    assert video is sdp.media[0]
    assert audio is sdp.media[1]


def test_play_reply_rtp_info() -> None:
    """The captured PLAY answer lists one RTP-Info entry per stream."""
    play = single_response("play_reply_gst_rtsp_server.txt")

    entries = parse_rtp_info(play.headers.get("RTP-Info") or "")

    assert [entry["url"] for entry in entries] == [
        "rtsp://127.0.0.1:8554/test/stream=0",
        "rtsp://127.0.0.1:8554/test/stream=1",
    ]
    assert all(entry["seq"].isdigit() and entry["rtptime"] for entry in entries)


@pytest.mark.parametrize(
    ("client", "server", "methods"),
    [
        (
            "dialogue_ffmpeg_udp_client.txt",
            "dialogue_ffmpeg_udp_server.txt",
            ["OPTIONS", "DESCRIBE", "SETUP", "SETUP", "PLAY", "TEARDOWN"],
        ),
        (
            "dialogue_gst_udp_client.txt",
            "dialogue_gst_udp_server.txt",
            ["OPTIONS", "DESCRIBE", "SETUP", "SETUP", "PLAY", "PAUSE", "TEARDOWN"],
        ),
        (
            "dialogue_gst_udp_rtsp2_client.txt",
            "dialogue_gst_udp_rtsp2_server.txt",
            ["OPTIONS", "DESCRIBE", "SETUP", "SETUP", "PLAY", "PAUSE", "TEARDOWN"],
        ),
    ],
)
def test_dialogue_cseq_pairs(client: str, server: str, methods: list[str]) -> None:
    """Each answer carries the CSeq of the request it answers, in order."""
    sent = requests(parse(load(client)))
    answered = responses(parse(load(server)))

    assert [request.method for request in sent] == methods
    assert [response.cseq for response in answered] == [r.cseq for r in sent]
    assert {response.version for response in answered} == {sent[0].version}


def test_rtsp2_pipelined_setup_has_no_session() -> None:
    """rtspsrc in 2.0 pipelines its SETUPs with Pipelined-Requests."""
    request = single_request("setup_gst_udp_rtsp2.txt")

    assert request.version == "RTSP/2.0"
    assert "Session" not in request.headers
    assert request.headers.get("Pipelined-Requests") == "426815442"


def test_rtcp_frames_between_client_requests() -> None:
    """rtspsrc over TCP sends interleaved RTCP between PLAY and PAUSE."""
    events = parse(load("dialogue_gst_tcp_client_rtcp_interleaved.bin"))

    kinds = [
        event.method if isinstance(event, Request) else type(event).__name__
        for event in events
    ]
    assert kinds == [
        "OPTIONS",
        "DESCRIBE",
        "SETUP",
        "SETUP",
        "PLAY",
        "InterleavedFrame",
        "InterleavedFrame",
        "PAUSE",
        "TEARDOWN",
    ]
    frames = [event for event in events if isinstance(event, InterleavedFrame)]
    assert [frame.channel for frame in frames] == [1, 3]
    # RFC 3550 6.4.2: version 2, packet type 201 (receiver report).
    assert all(frame.payload[0] >> 6 == 2 for frame in frames)
    assert all(frame.payload[1] == 201 for frame in frames)


def test_server_stream_head_and_tail() -> None:
    """Server answers and RTP frames on channels 0 and 2 parse in order."""
    head = parse(load("stream_head_gst_tcp_server.bin"))
    tail = parse(load("stream_tail_gst_tcp_server.bin"))

    assert [r.cseq for r in responses(head)] == ["1", "2", "3", "4", "5"]
    assert [r.cseq for r in responses(tail)] == ["6", "7"]
    frames = [e for e in head + tail if isinstance(e, InterleavedFrame)]
    assert {frame.channel for frame in frames} == {0, 2}
    assert all(frame.payload[0] >> 6 == 2 for frame in frames)
    assert max(len(frame.payload) for frame in frames) == 1400


def test_iptv_single_port_mp2t() -> None:
    """The hand-written MP2T/H2221 SETUP uses one port and no RTP."""
    request = single_request("handwritten_setup_iptv_mp2t_single_port.txt")
    (spec,) = parse_transport(request.headers.get("Transport") or "")

    assert spec.client_port == PortRange(27392)
    assert not spec.is_rtp
    assert spec.is_unicast


def test_iptv_single_port_reply() -> None:
    """The hand-written answer names destination and one server port."""
    response = single_response("handwritten_setup_reply_iptv_mp2t_single_port.txt")
    (spec,) = parse_transport(response.headers.get("Transport") or "")

    assert spec.destination == "192.0.2.10"
    assert spec.server_port == PortRange(35006)
    assert parse_session(response.headers.get("Session") or "") == ("80341952", 60.0)


def test_iptv_zte_x_nat_and_client_address() -> None:
    """The hand-written ZTE SETUP keeps x-NAT and client_address untouched."""
    data = load("handwritten_setup_iptv_zte_x_nat.txt")
    request = single_request("handwritten_setup_iptv_zte_x_nat.txt")
    (spec,) = parse_transport(request.headers.get("Transport") or "")

    assert request.headers.get("X-NAT") == "192.0.2.10:40000"
    assert spec.get("client_address") == "192.0.2.10"
    assert spec.is_rtp

    spec.set_ports("client_port", PortRange(30000, 30001))
    request.headers.set("Transport", str(spec))
    assert request.serialize() == data.replace(b"40000-40001", b"30000-30001")


def test_iptv_bare_lf_keepalive() -> None:
    """The hand-written bare-LF GET_PARAMETER keepalive parses."""
    request = single_request("handwritten_get_parameter_iptv_keepalive.txt")

    assert request.method == "GET_PARAMETER"
    assert request.body == b""
    assert parse_session(request.headers.get("Session") or "") == ("80341952", None)
