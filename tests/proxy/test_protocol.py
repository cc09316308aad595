"""The proxy protocol, driven through StringTransports and a Clock."""

from __future__ import annotations

import pytest

from hostednat.nat.binding import BindingFailed, Endpoint
from hostednat.proxy.admission import Admission, AdmissionRefused
from hostednat.rtsp.message import Request, Response
from hostednat.rtsp.parser import RtspParser
from hostednat.rtsp.transport import parse_transport

from .fakes import ScriptedAdmission
from .harness import Harness, answer, request

BOX_URL = "rtsp://198.51.100.1:8554/test"
SERVER_URL = "rtsp://203.0.113.10:8554/test"
UDP = "Transport: RTP/AVP/UDP;unicast;client_port=5000-5001"


def parse_all(data: bytes) -> list[Request | Response]:
    messages = RtspParser().feed(data)
    return [m for m in messages if isinstance(m, Request | Response)]


def one(data: bytes) -> Request | Response:
    messages = parse_all(data)
    assert len(messages) == 1, messages
    return messages[0]


def setup_udp(h: Harness, cseq: int = 1, track: str = "stream=0") -> Response:
    """Run one UDP SETUP through the proxy with a server that accepts it."""
    h.box_sends(request("SETUP", f"{BOX_URL}/{track}", cseq, UDP))
    sent = one(h.server_sees())
    assert isinstance(sent, Request)
    spec = parse_transport(sent.headers.get("Transport") or "")[0]
    ports = spec.client_port
    assert ports is not None
    h.server_sends(
        answer(
            200,
            cseq,
            "Transport: RTP/AVP;unicast;client_port="
            f"{ports.first}-{ports.last};server_port=6970-6971;ssrc=1234ABCD",
            "Session: 8dz_VIbx;timeout=30",
        )
    )
    reply = one(h.box_sees())
    assert isinstance(reply, Response)
    return reply


def test_options_is_relayed_with_via_and_rewritten_uri() -> None:
    """A request reaches the server with the upstream URL and a Via field."""
    h = Harness()
    h.box_sends(request("OPTIONS", BOX_URL, 1, "User-Agent: Lavf59"))
    sent = one(h.server_sees())
    assert isinstance(sent, Request)
    assert sent.uri == SERVER_URL
    assert sent.headers.get("Via") == "RTSP/1.0 hostednat"
    assert sent.headers.get("User-Agent") == "Lavf59"
    h.server_sends(answer(200, 1, "Public: OPTIONS, DESCRIBE, SETUP"))
    reply = one(h.box_sees())
    assert isinstance(reply, Response)
    assert reply.status == 200 and reply.cseq == "1"
    assert reply.headers.get("Public") == "OPTIONS, DESCRIBE, SETUP"


def test_pipelined_requests_are_forwarded_before_any_answer() -> None:
    """Pipelined requests go upstream at once and answers come back in order."""
    h = Harness()
    h.box_sends(request("OPTIONS", BOX_URL, 1) + request("DESCRIBE", BOX_URL, 2))
    sent = parse_all(h.server_sees())
    assert [m.cseq for m in sent] == ["1", "2"]
    h.server_sends(answer(200, 1) + answer(200, 2))
    assert [m.cseq for m in parse_all(h.box_sees())] == ["1", "2"]


def test_udp_setup_points_server_at_core_and_box_at_access() -> None:
    """SETUP gets the core pair; its answer gets the box ports and access side."""
    h = Harness()
    h.box_sends(request("SETUP", f"{BOX_URL}/stream=0", 3, UDP))
    sent = one(h.server_sees())
    assert isinstance(sent, Request)
    towards_server = parse_transport(sent.headers.get("Transport") or "")[0]
    assert str(towards_server.client_port) == "40000-40001"
    assert towards_server.destination is None

    h.server_sends(
        answer(
            200,
            3,
            "Transport: RTP/AVP;unicast;client_port=40000-40001;"
            'server_port=6970-6971;ssrc=547EA9DC;mode="PLAY"',
            "Session: 8dz_VIbx",
        )
    )
    reply = one(h.box_sees())
    assert isinstance(reply, Response)
    spec = parse_transport(reply.headers.get("Transport") or "")[0]
    assert str(spec.client_port) == "5000-5001"
    assert str(spec.server_port) == "30000-30001"
    assert spec.source == "198.51.100.1"
    assert spec.ssrc == "547EA9DC"
    assert spec.get("mode") == "PLAY"
    assert h.bindings.installed["b0"] == (
        Endpoint("203.0.113.10", 6970),
        Endpoint("203.0.113.10", 6971),
    )
    session = h.sessions.by_id("8dz_VIbx")
    assert session is not None and "b0" in h.bindings.live


def test_single_port_transport_gets_single_ports() -> None:
    """MP2T over UDP with one client port gets one core and one access port."""
    h = Harness()
    h.box_sends(
        request(
            "SETUP",
            f"{BOX_URL}/ts",
            1,
            "Transport: MP2T/H2221/UDP;unicast;client_port=27392",
        )
    )
    sent = one(h.server_sees())
    spec = parse_transport(sent.headers.get("Transport") or "")[0]
    assert str(spec.client_port) == "40000"
    h.server_sends(
        answer(
            200,
            1,
            "Transport: MP2T/H2221/UDP;unicast;destination=203.0.113.1;"
            "client_port=40000;server_port=6970",
            "Session: 77",
        )
    )
    spec = parse_transport(one(h.box_sees()).headers.get("Transport") or "")[0]
    assert str(spec.client_port) == "27392"
    assert str(spec.server_port) == "30000"
    assert spec.destination is None
    assert h.bindings.installed["b0"] == (Endpoint("203.0.113.10", 6970), None)


def test_tcp_interleaved_setup_passes_untouched_without_binding() -> None:
    """TCP-interleaved transports need no binding and are not rewritten."""
    h = Harness()
    transport = "Transport: RTP/AVP/TCP;unicast;interleaved=0-1"
    h.box_sends(request("SETUP", f"{BOX_URL}/stream=0", 3, transport))
    sent = one(h.server_sees())
    assert sent.headers.get("Transport") == "RTP/AVP/TCP;unicast;interleaved=0-1"
    assert h.bindings.live == {}


def test_third_party_destination_is_not_forwarded() -> None:
    """A destination other than the box's own address never reaches the server."""
    h = Harness()
    h.box_sends(
        request(
            "SETUP",
            f"{BOX_URL}/stream=0",
            1,
            "Transport: RTP/AVP;unicast;destination=198.51.100.99;"
            "client_port=5000-5001",
        )
    )
    sent = one(h.server_sees())
    value = sent.headers.get("Transport") or ""
    assert "198.51.100.99" not in value
    assert "client_port=40000-40001" in value


def test_no_free_ports_answers_453_without_contacting_server() -> None:
    """An exhausted port range gives 453 and the SETUP is not forwarded."""
    h = Harness(capacity=0)
    h.box_sends(request("OPTIONS", BOX_URL, 1))
    h.server_sends(answer(200, 1))
    h.box_sees()
    h.server_sees()
    h.box_sends(request("SETUP", f"{BOX_URL}/stream=0", 2, UDP))
    assert h.server_sees() == b""
    reply = one(h.box_sees())
    assert isinstance(reply, Response)
    assert (reply.status, reply.cseq) == (453, "2")


def test_admission_refusal_answers_its_status_and_releases_binding() -> None:
    """A refused stream gets the hook's status and headers; its ports go back."""
    refusal = AdmissionRefused(503, "Service Unavailable", {"Retry-After": "30"})
    admission = ScriptedAdmission(refusal)
    h = Harness(admission=admission)
    h.box_sends(request("SETUP", f"{BOX_URL}/stream=0", 1, UDP))
    assert h.server_sees() == b""
    reply = one(h.box_sees())
    assert isinstance(reply, Response)
    assert reply.status == 503
    assert reply.headers.get("Retry-After") == "30"
    assert h.bindings.live == {} and h.bindings.removed == ["b0"]
    assert admission.asked[0].box_address == "192.0.2.7"


def test_admission_is_told_about_established_stream_and_session_end() -> None:
    """The hook hears the server's RTP source and, at TEARDOWN, the end."""
    admission = ScriptedAdmission()
    h = Harness(admission=admission)
    setup_udp(h)
    stream, server = admission.established[0]
    assert server == Endpoint("203.0.113.10", 6970)
    h.box_sends(request("TEARDOWN", BOX_URL, 2, "Session: 8dz_VIbx"))
    h.server_sends(answer(200, 2))
    assert admission.ended == [(stream.session_key, "teardown")]


def test_teardown_answer_releases_bindings() -> None:
    """The bindings of a session go back when its TEARDOWN is answered."""
    h = Harness()
    setup_udp(h, 1, "stream=0")
    setup_udp(h, 2, "stream=1")
    assert len(h.bindings.live) == 2
    h.box_sends(request("TEARDOWN", BOX_URL, 3, "Session: 8dz_VIbx"))
    h.server_sees()
    assert len(h.bindings.live) == 2
    h.server_sends(answer(200, 3))
    assert h.bindings.live == {}
    assert len(h.sessions) == 0


def test_failed_setup_releases_its_binding() -> None:
    """A SETUP the server refuses leaves no binding behind."""
    h = Harness()
    h.box_sends(request("SETUP", f"{BOX_URL}/stream=0", 1, UDP))
    h.server_sees()
    h.server_sends(answer(461, 1))
    assert one(h.box_sees()).status == 461
    assert h.bindings.live == {}


def test_resetup_over_tcp_releases_the_udp_binding() -> None:
    """A box falling back to TCP for a stream gives its UDP binding back."""
    h = Harness()
    setup_udp(h, 1)
    h.box_sends(
        request(
            "SETUP",
            f"{BOX_URL}/stream=0",
            2,
            "Transport: RTP/AVP/TCP;unicast;interleaved=0-1",
            "Session: 8dz_VIbx",
        )
    )
    h.server_sees()
    h.server_sends(
        answer(
            200,
            2,
            "Transport: RTP/AVP/TCP;unicast;interleaved=0-1",
            "Session: 8dz_VIbx",
        )
    )
    h.box_sees()
    assert h.bindings.live == {}


def test_session_timeout_releases_bindings_on_the_clock() -> None:
    """With no request from the box, bindings go after timeout plus grace."""
    h = Harness()
    setup_udp(h)
    h.clock.advance(30 + 10 - 1)
    assert len(h.bindings.live) == 1
    h.box_sends(request("GET_PARAMETER", BOX_URL, 2, "Session: 8dz_VIbx"))
    h.clock.advance(39)
    assert len(h.bindings.live) == 1
    h.clock.advance(2)
    assert h.bindings.live == {}


def test_upstream_close_releases_bindings_and_answers_502() -> None:
    """The server hanging up ends the session and fails what it owed."""
    h = Harness()
    setup_udp(h)
    h.box_sends(request("PLAY", BOX_URL, 2, "Session: 8dz_VIbx"))
    h.server_closes()
    reply = one(h.box_sees())
    assert isinstance(reply, Response)
    assert (reply.status, reply.cseq) == (502, "2")
    assert h.bindings.live == {}
    assert h.box_transport.disconnecting


def test_box_close_releases_bindings_and_upstream() -> None:
    """The box hanging up ends its sessions and the upstream connection."""
    h = Harness()
    setup_udp(h)
    h.box_closes()
    assert h.bindings.live == {}
    assert h.server_transport.disconnecting


def test_silent_upstream_answers_504() -> None:
    """A server that does not answer in time gets the box a 504."""
    h = Harness()
    h.box_sends(request("DESCRIBE", BOX_URL, 1))
    h.clock.advance(4.9)
    assert h.box_sees() == b""
    h.clock.advance(0.2)
    reply = one(h.box_sees())
    assert isinstance(reply, Response)
    assert (reply.status, reply.cseq) == (504, "1")


def test_unreachable_upstream_answers_502() -> None:
    """A server that refuses the connection gets the box a 502."""
    h = Harness()
    h.factory.refuse = True
    h.box_sends(request("OPTIONS", BOX_URL, 1))
    reply = one(h.box_sees())
    assert isinstance(reply, Response)
    assert (reply.status, reply.cseq) == (502, "1")
    assert h.box_transport.disconnecting


def test_malformed_request_answers_400_and_closes() -> None:
    """Garbage from the box gets a 400 and a clean close."""
    h = Harness()
    h.box_sends(b"HELLO\r\n\r\n")
    reply = one(h.box_sees())
    assert isinstance(reply, Response) and reply.status == 400
    assert h.box_transport.disconnecting


def test_oversized_header_block_answers_400() -> None:
    """A header block over the configured cap gets a 400 and a close."""
    h = Harness()
    h.box_sends(b"OPTIONS " + BOX_URL.encode() + b" RTSP/1.0\r\nX: " + b"a" * 4096)
    reply = one(h.box_sees())
    assert isinstance(reply, Response) and reply.status == 400
    assert h.box_transport.disconnecting


def test_forward_mode_refuses_hosts_off_the_allow_list() -> None:
    """Forward mode answers 403 for an origin not on the allow-list."""
    h = Harness(
        """
        [rtsp]
        mode = "forward"
        [forward]
        allow = ["203.0.113.10:8554"]
        """
    )
    h.box_sends(request("OPTIONS", "rtsp://198.51.100.200/x", 1))
    reply = one(h.box_sees())
    assert isinstance(reply, Response) and reply.status == 403
    h.box_sends(request("OPTIONS", SERVER_URL, 2))
    sent = one(h.server_sees())
    assert isinstance(sent, Request) and sent.uri == SERVER_URL


def test_interleaved_frames_are_relayed_both_ways() -> None:
    """``$`` frames pass unchanged in both directions."""
    h = Harness()
    h.box_sends(request("OPTIONS", BOX_URL, 1))
    h.server_sends(answer(200, 1))
    h.box_sees()
    h.server_sees()
    frame = b"$\x00\x00\x04abcd"
    h.server_sends(frame)
    assert h.box_sees() == frame
    h.box_sends(b"$\x01\x00\x02xy")
    assert h.server_sees() == b"$\x01\x00\x02xy"


def test_server_requests_reach_the_box_and_its_answers_return() -> None:
    """Server-to-box requests are relayed and the box's answer goes back."""
    h = Harness()
    h.box_sends(request("OPTIONS", BOX_URL, 1))
    h.server_sends(answer(200, 1))
    h.box_sees()
    h.server_sees()
    h.server_sends(request("SET_PARAMETER", SERVER_URL, 7, "Session: 1"))
    relayed = one(h.box_sees())
    assert isinstance(relayed, Request) and relayed.uri == BOX_URL
    h.box_sends(answer(200, 7, "Session: 1"))
    back = one(h.server_sees())
    assert isinstance(back, Response) and back.cseq == "7"


def test_describe_answer_urls_are_rewritten_to_the_proxy() -> None:
    """Content-Base and absolute SDP controls point the box back at the proxy."""
    h = Harness()
    sdp = (
        b"v=0\r\no=- 1 1 IN IP4 203.0.113.10\r\ns=t\r\nt=0 0\r\n"
        b"a=control:rtsp://203.0.113.10:8554/test/\r\n"
        b"m=video 0 RTP/AVP 26\r\nb=AS:500\r\n"
        b"a=control:rtsp://203.0.113.10:8554/test/stream=0\r\n"
    )
    h.box_sends(request("DESCRIBE", BOX_URL, 1))
    h.server_sees()
    h.server_sends(
        answer(
            200,
            1,
            "Content-Type: application/sdp",
            f"Content-Base: {SERVER_URL}/",
            body=sdp,
        )
    )
    reply = one(h.box_sees())
    assert isinstance(reply, Response)
    assert reply.headers.get("Content-Base") == f"{BOX_URL}/"
    assert b"203.0.113.10:8554" not in reply.body.split(b"a=control")[1]
    assert f"a=control:{BOX_URL}/stream=0".encode() in reply.body
    assert reply.headers.get("Content-Length") == str(len(reply.body))


def test_admission_gets_media_from_the_cached_describe() -> None:
    """The stream description carries the SDP media section of the SETUP URL."""
    admission = ScriptedAdmission()
    h = Harness(admission=admission)
    sdp = (
        b"v=0\r\ns=t\r\nt=0 0\r\nm=video 0 RTP/AVP 26\r\nb=AS:500\r\n"
        b"a=control:stream=0\r\nm=audio 0 RTP/AVP 96\r\na=control:stream=1\r\n"
    )
    h.box_sends(request("DESCRIBE", BOX_URL, 1))
    h.server_sees()
    h.server_sends(answer(200, 1, f"Content-Base: {SERVER_URL}/", body=sdp))
    h.box_sees()
    h.box_sends(request("SETUP", f"{BOX_URL}/stream=1", 2, UDP))
    media = admission.asked[0].media
    assert media is not None
    assert (media.media, media.index) == ("audio", 2)


def test_proxy_require_answers_551() -> None:
    """Option tags the proxy must support but does not get 551 Unsupported."""
    h = Harness()
    h.box_sends(request("OPTIONS", BOX_URL, 1, "Proxy-Require: x-magic"))
    reply = one(h.box_sees())
    assert isinstance(reply, Response)
    assert reply.status == 551 and reply.headers.get("Unsupported") == "x-magic"


def test_policy_termination_tears_down_and_hangs_up() -> None:
    """The hook ending a session releases it, tears it down, and hangs up."""
    admission = ScriptedAdmission()
    h = Harness(admission=admission)
    setup_udp(h)
    key = admission.asked[0].session_key
    assert admission.terminate is not None
    admission.terminate(key, "aborted by policy")
    assert h.bindings.live == {}
    teardown = one(h.server_sees())
    assert isinstance(teardown, Request) and teardown.method == "TEARDOWN"
    assert teardown.headers.get("Session") == "8dz_VIbx"
    assert h.box_transport.disconnecting and h.server_transport.disconnecting


def test_server_teardown_releases_the_session() -> None:
    """An RTSP 2.0 server ending a session releases its bindings."""
    h = Harness()
    setup_udp(h)
    h.server_sends(
        request("TEARDOWN", SERVER_URL, 9, "Session: 8dz_VIbx").replace(
            b"RTSP/1.0", b"RTSP/2.0"
        )
    )
    relayed = one(h.box_sees())
    assert isinstance(relayed, Request) and relayed.method == "TEARDOWN"
    assert h.bindings.live == {}


@pytest.mark.xfail(
    strict=True, reason="one upstream server per box connection (README Limitations)"
)
def test_second_upstream_on_one_connection_is_relayed() -> None:
    """A request for another routed server on the same connection reaches it."""
    h = Harness(
        """
        [rtsp]
        mode = "forward"
        [forward]
        allow = ["203.0.113.10:8554", "203.0.113.20:8554"]
        """
    )
    h.box_sends(request("OPTIONS", SERVER_URL, 1))
    h.server_sends(answer(200, 1))
    h.box_sees()
    h.box_sends(request("OPTIONS", "rtsp://203.0.113.20:8554/other", 2))
    assert [target.host for target in h.factory.targets] == [
        "203.0.113.10",
        "203.0.113.20",
    ]


@pytest.mark.parametrize("closing", ["box", "server"])
def test_hang_up_after_teardown_ends_the_session_as_teardown(closing: str) -> None:
    """A connection closed before the TEARDOWN answer still ends it as teardown."""
    admission = ScriptedAdmission()
    h = Harness(admission=admission)
    setup_udp(h)
    stream, _ = admission.established[0]
    h.box_sends(request("TEARDOWN", BOX_URL, 2, "Session: 8dz_VIbx"))
    assert h.server_sees().startswith(b"TEARDOWN ")

    if closing == "box":
        h.box_closes()
    else:
        h.server_closes()

    assert admission.ended == [(stream.session_key, "teardown")]
    assert h.bindings.live == {}


def test_answered_teardown_leaves_no_session_behind() -> None:
    """After an answered TEARDOWN the connection keeps no trace of the session."""
    h = Harness()
    setup_udp(h)
    h.box_sends(request("TEARDOWN", BOX_URL, 2, "Session: 8dz_VIbx"))
    h.server_sends(answer(200, 2))

    assert h.box._tearing_down == set()
    assert h.box._sessions == {}


def test_box_leaving_during_admission_releases_the_binding() -> None:
    """A binding allocated for a SETUP still under admission goes back if the
    box hangs up before the verdict, and nothing reaches the server."""
    admission = ScriptedAdmission(hold=True)
    h = Harness(admission=admission)
    h.box_sends(request("OPTIONS", BOX_URL, 1))
    h.server_sends(answer(200, 1))
    h.box_sees()
    h.server_sees()
    h.box_sends(request("SETUP", f"{BOX_URL}/stream=0", 2, UDP))
    assert len(h.bindings.live) == 1
    h.box_closes()
    admission.pending[0].callback(Admission())
    assert h.bindings.live == {}
    assert h.server_sees() == b""


def test_setup_on_an_expired_session_holds_no_binding() -> None:
    """A SETUP naming a session that timed out leaves no binding behind."""
    h = Harness()
    setup_udp(h)
    h.clock.advance(41)
    assert h.bindings.live == {}
    h.box_sends(request("SETUP", f"{BOX_URL}/stream=1", 2, UDP, "Session: 8dz_VIbx"))
    sent = one(h.server_sees())
    ports = parse_transport(sent.headers.get("Transport") or "")[0].client_port
    h.server_sends(
        answer(
            200,
            2,
            f"Transport: RTP/AVP;unicast;client_port={ports};server_port=6972-6973",
            "Session: 8dz_VIbx;timeout=30",
        )
    )
    h.box_sees()
    h.box_closes()
    assert h.bindings.live == {}


def test_joined_sessions_end_both_admission_sessions() -> None:
    """When the server puts a second SETUP in the first one's session, the
    admission hook still hears the end of both keys it admitted."""
    admission = ScriptedAdmission()
    h = Harness(admission=admission)
    setup_udp(h, 1, "stream=0")
    setup_udp(h, 2, "stream=1")
    keys = {stream.session_key for stream in admission.asked}
    assert len(keys) == 2
    h.box_sends(request("TEARDOWN", BOX_URL, 3, "Session: 8dz_VIbx"))
    h.server_sends(answer(200, 3))
    assert {key for key, _ in admission.ended} == keys
    assert h.bindings.live == {}


def test_requests_queued_behind_admission_count_towards_the_cap() -> None:
    """Requests waiting behind a SETUP under admission pause reading at the
    pipelining cap, so a box cannot queue without bound."""
    admission = ScriptedAdmission(hold=True)
    h = Harness(admission=admission)
    h.box_sends(request("OPTIONS", BOX_URL, 1))
    h.server_sends(answer(200, 1))
    h.box_sees()
    h.box_sends(request("SETUP", f"{BOX_URL}/stream=0", 2, UDP))
    h.box_sends(b"".join(request("OPTIONS", BOX_URL, n) for n in range(3, 40)))
    assert h.box_transport.producerState == "paused"
    admission.pending[0].callback(Admission())
    h.server_sends(answer(461, 2) + b"".join(answer(200, n) for n in range(3, 40)))
    assert len(parse_all(h.box_sees())) == 38
    assert h.box_transport.producerState == "producing"


def test_data_plane_failure_answers_its_status() -> None:
    """A binding the data plane cannot create gets 503, not silence."""
    h = Harness()
    h.bindings.failure = BindingFailed("netlink said no")
    h.box_sends(request("OPTIONS", BOX_URL, 1))
    h.server_sends(answer(200, 1))
    h.box_sees()
    h.box_sends(request("SETUP", f"{BOX_URL}/stream=0", 2, UDP))
    reply = one(h.box_sees())
    assert isinstance(reply, Response) and reply.status == 503


def test_policy_teardown_names_the_aggregate_url() -> None:
    """The proxy's own TEARDOWN uses the session's DESCRIBE URL."""
    admission = ScriptedAdmission()
    h = Harness(admission=admission)
    h.box_sends(request("DESCRIBE", BOX_URL, 1))
    h.server_sees()
    h.server_sends(answer(200, 1, f"Content-Base: {SERVER_URL}/", body=b"v=0\r\n"))
    h.box_sees()
    setup_udp(h, 2)
    assert admission.terminate is not None
    admission.terminate(admission.asked[0].session_key, "aborted by policy")
    teardown = one(h.server_sees())
    assert isinstance(teardown, Request)
    assert (teardown.method, teardown.uri) == ("TEARDOWN", SERVER_URL)
