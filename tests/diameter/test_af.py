"""The AF procedure against a scripted Diameter link, no network."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail
from twisted.logger import globalLogPublisher

from hostednat.diameter import codec, messages
from hostednat.diameter.af import GqAdmission, media_component, termination_cause
from hostednat.diameter.config import RacsConfig
from hostednat.diameter.dictionary import (
    APPLICATION_GQ,
    APPLICATION_RX,
    Command,
    TerminationCause,
)
from hostednat.diameter.messages import Identity, SessionIdFactory, TransportAddress
from hostednat.diameter.results import NoPeerAvailable, RequestTimedOut, Result
from hostednat.nat.binding import Binding, BindingRequest, Endpoint, PortPair
from hostednat.proxy.admission import AdmissionRefused, StreamDescription
from hostednat.rtsp.sdp import parse_sdp

from .helpers import SPDF

DATA = Path(__file__).parent / "data"
RTSP_DATA = Path(__file__).parents[1] / "data" / "rtsp"
REGENERATE = os.environ.get("HOSTEDNAT_REGEN_GOLDEN") == "1"


class ScriptedLink:
    """A Diameter link whose requests the test answers by hand."""

    def __init__(self) -> None:
        self.on_request: Any = None
        self.requests: list[tuple[codec.Header, Any, Deferred[Any]]] = []
        self.answers: list[tuple[str, bytes]] = []
        self.failure: Exception | None = None
        self.stopped = False

    def request(self, data: bytes, timeout: float | None = None) -> Deferred[Any]:
        if self.failure is not None:
            return fail(self.failure)
        data = codec.with_identifiers(data, len(self.requests) + 1, 1000)
        waiting: Deferred[Any] = Deferred()
        self.requests.append((codec.parse_header(data), codec.decode(data), waiting))
        return waiting

    def respond(
        self, result: Result, output: tuple[TransportAddress, ...] = ()
    ) -> None:
        header, message, waiting = self.requests[-1]
        session_id = messages.session_id_of(message.avps) or ""
        data = messages.aa_answer(header, SPDF, session_id, result, (), output)
        waiting.callback((codec.parse_header(data), codec.decode(data)))

    def answer(self, peer: str, data: bytes) -> None:
        self.answers.append((peer, data))

    def stop(self) -> None:
        self.stopped = True


def racs(**overrides: Any) -> RacsConfig:
    data: dict[str, Any] = {
        "origin_host": "af1.iptv.example.net",
        "origin_realm": "iptv.example.net",
        "destination_realm": "racs.example.net",
        "address_realm": "access.example.net",
        "service_class": "IPTV",
        "reservation_priority": 2,
        "retry_after": 30,
        "peers": [{"host": "192.0.2.30"}],
    }
    data.update(overrides)
    return RacsConfig.from_mapping(data, "test.toml")


def admission(config: RacsConfig | None = None) -> tuple[GqAdmission, ScriptedLink]:
    config = config or racs()
    link = ScriptedLink()
    identity = Identity(config.origin_host, config.origin_realm, config.application_id)
    hook = GqAdmission(
        config, link, identity, SessionIdFactory(config.origin_host, 1718000000)
    )
    return hook, link


def sdp_media(path: Path, index: int) -> Any:
    body = path.read_bytes()
    if b"\r\n\r\n" in body:
        body = body.split(b"\r\n\r\n", 1)[1]
    return parse_sdp(body).media[index - 1]


def stream(
    media: Any = None, key: str = "rtsp-1", transport: str = "UDP", index: int = 1
) -> StreamDescription:
    binding = Binding(
        "b1",
        BindingRequest("203.0.113.7", PortPair(5000, 5001), key),
        "192.0.2.50",
        "198.51.100.20",
        PortPair(30000, 30001),
        PortPair(40000, 40001),
    )
    return StreamDescription(
        session_key=key,
        box_address="203.0.113.7",
        box_ports=PortPair(5000, 5001) if transport == "UDP" else None,
        lower_transport=transport,
        control_url="rtsp://198.51.100.80/live/trackID=1",
        media=media,
        media_index=index,
        binding=binding,
    )


def decoded(link: ScriptedLink, position: int = -1) -> str:
    _, message, _ = link.requests[position]
    return "\n".join(codec.describe(message.avps)) + "\n"


def check_golden(name: str, text: str) -> None:
    path = DATA / name
    if REGENERATE:
        path.write_text(text)
    assert text == path.read_text()


@pytest.fixture
def logged() -> Iterator[list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(events.append)


@pytest.mark.parametrize(
    ("capture", "index", "golden"),
    [
        (RTSP_DATA / "describe_reply_gst_rtsp_server.txt", 1, "aar_gst_video.txt"),
        (RTSP_DATA / "describe_reply_gst_rtsp_server.txt", 2, "aar_gst_audio.txt"),
        (DATA / "sdp_iptv_mp2t_handwritten.sdp", 1, "aar_iptv_mp2t.txt"),
    ],
)
def test_initial_aar_matches_golden_decode(
    capture: Path, index: int, golden: str
) -> None:
    """The initial AAR for a captured SDP decodes to the golden AVP tree."""
    hook, link = admission()
    hook.admit(stream(sdp_media(capture, index), index=index))
    header, _, _ = link.requests[0]
    assert header.command_code == Command.AA
    assert header.application_id == APPLICATION_GQ
    assert header.is_request and header.flags & codec.FLAG_PROXIABLE
    check_golden(golden, decoded(link))


def test_bandwidth_adds_ip_udp_rtp_overhead() -> None:
    """b=AS:8000 with 1316-byte payloads asks 8000 kbit/s plus 40/1316."""
    media = sdp_media(DATA / "sdp_iptv_mp2t_handwritten.sdp", 1)
    component = media_component(stream(media), racs())
    assert component.bandwidth_dl == round(8_000_000 * 1356 / 1316)
    assert component.rr_bandwidth == 20000
    assert component.rs_bandwidth == 5000
    assert component.bandwidth_ul == 64000


def test_rx_request_has_no_etsi_avps() -> None:
    """In Rx mode the AAR carries Framed-IP-Address and no ETSI AVPs."""
    hook, link = admission(racs(application="rx"))
    hook.admit(stream(sdp_media(DATA / "sdp_iptv_mp2t_handwritten.sdp", 1)))
    header, message, _ = link.requests[0]
    assert header.application_id == APPLICATION_RX
    assert not [a for a in message.avps if a.vendor_id == 13019]
    assert messages.subscriber_address(message.avps) == "203.0.113.7"


def test_interleaved_stream_passes_without_aar() -> None:
    """A TCP-interleaved SETUP is admitted with no Diameter exchange (D8)."""
    hook, link = admission()
    result = hook.admit(stream(transport="TCP"))
    assert result.result.access is None  # type: ignore[attr-defined]
    assert not link.requests


def test_binding_output_list_gives_the_access_address() -> None:
    """A Binding-Output-List in the AAA becomes Admission.access."""
    hook, link = admission()
    verdict = hook.admit(stream())
    link.respond(
        Result(0, 2001),
        (
            TransportAddress("192.0.2.60", 31000),
            TransportAddress("198.51.100.21", 41000),
        ),
    )
    assert verdict.result.access == Endpoint("192.0.2.60", 31000)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("result", "status", "cause"),
    [
        (Result(13019, 4041), 453, "diameter-4041"),
        (Result(13019, 4045), 453, "diameter-4045"),
        (Result(13019, 4046), 453, "diameter-4046"),
        (Result(0, 4041), 453, "diameter-4041"),
        (Result(0, 5003), 403, "diameter-5003"),
        (Result(0, 3002), 503, "diameter-3002"),
        (Result(0, 3004), 503, "diameter-3004"),
        (Result(0, 5012), 500, "diameter-5012"),
    ],
)
def test_refusal_maps_to_rtsp_answer(
    result: Result, status: int, cause: str, logged: list[dict[str, Any]]
) -> None:
    """An AAA refusal becomes the RTSP status of table 4.9 and is logged."""
    hook, link = admission()
    verdict = hook.admit(stream())
    link.respond(result)
    failure = verdict.result  # type: ignore[attr-defined]
    verdict.addErrback(lambda _: None)
    assert isinstance(failure.value, AdmissionRefused)
    assert failure.value.status == status
    assert failure.value.cause == cause
    if status == 503:
        assert failure.value.headers == {"Retry-After": "30"}
    refusals = [e for e in logged if e.get("hostednat_event") == "racs.refused"]
    assert [e["result_code"] for e in refusals] == [result.code]


@pytest.mark.parametrize(
    ("error", "status"), [(NoPeerAvailable(), 503), (RequestTimedOut(), 504)]
)
def test_local_failures_fail_closed(error: Exception, status: int) -> None:
    """No peer gives 503 with Retry-After, no answer in time gives 504."""
    hook, link = admission()
    link.failure = error
    verdict = hook.admit(stream())
    failure = verdict.result  # type: ignore[attr-defined]
    verdict.addErrback(lambda _: None)
    assert failure.value.status == status


def test_fail_open_admits_when_racs_is_unreachable() -> None:
    """fail_open admits the stream when no SPDF can answer."""
    hook, link = admission(racs(fail_open=True))
    link.failure = NoPeerAvailable()
    verdict = hook.admit(stream())
    assert verdict.result.access is None  # type: ignore[attr-defined]


def test_fail_open_still_honours_policy_refusals() -> None:
    """fail_open does not override an explicit 4041 refusal."""
    hook, link = admission(racs(fail_open=True))
    verdict = hook.admit(stream())
    link.respond(Result(13019, 4041))
    failure = verdict.result  # type: ignore[attr-defined]
    verdict.addErrback(lambda _: None)
    assert failure.value.status == 453


def test_update_aar_carries_core_side_flows() -> None:
    """Once the server answered, an update AAR carries four Flow-Descriptions."""
    hook, link = admission()
    hook.admit(stream())
    link.respond(Result(0, 2001))
    hook.stream_established(stream(), Endpoint("198.51.100.80", 6970))
    check_golden("aar_update_flows.txt", decoded(link))


def test_str_on_session_end_with_logout() -> None:
    """A TEARDOWN ends the Gq' session with STR, Termination-Cause LOGOUT."""
    hook, link = admission()
    hook.admit(stream())
    link.respond(Result(0, 2001))
    hook.session_ended("rtsp-1", "teardown")
    header, message, _ = link.requests[-1]
    assert header.command_code == Command.SESSION_TERMINATION
    assert codec.value_of(message.avps, 295) == TerminationCause.LOGOUT


def test_refused_session_sends_no_str() -> None:
    """A session whose only AAR was refused has nothing to terminate."""
    hook, link = admission()
    verdict = hook.admit(stream())
    link.respond(Result(13019, 4041))
    verdict.addErrback(lambda _: None)
    hook.session_ended("rtsp-1", "teardown")
    assert len(link.requests) == 1


def spdf_request(command: int, session_id: str, **avps: Any) -> tuple[Any, Any]:
    if command == Command.RE_AUTH:
        data = messages.re_auth_request(
            SPDF, session_id, "iptv.example.net", "af1.iptv.example.net", **avps
        )
    else:
        data = messages.abort_session_request(
            SPDF, session_id, "iptv.example.net", "af1.iptv.example.net", **avps
        )
    data = codec.with_identifiers(data, 77, 88)
    return codec.parse_header(data), codec.decode(data)


def admitted() -> tuple[GqAdmission, ScriptedLink, list[tuple[str, str]], str]:
    hook, link = admission()
    terminated: list[tuple[str, str]] = []

    def terminate(key: str, cause: str) -> None:
        terminated.append((key, cause))
        hook.session_ended(key, cause)

    hook.attach(terminate)
    hook.admit(stream())
    link.respond(Result(0, 2001))
    _, message, _ = link.requests[0]
    return hook, link, terminated, messages.session_id_of(message.avps) or ""


def answered_result(link: ScriptedLink) -> int | None:
    message = codec.decode(link.answers[-1][1])
    result = messages.result_of(message.avps)
    return None if result is None else result.code


def test_releasing_rar_terminates_and_sends_str() -> None:
    """A RAR reporting release of bearer: RAA 2001, terminate, STR."""
    hook, link, terminated, session_id = admitted()
    hook.request_received(
        "spdf1", *spdf_request(258, session_id, specific_actions=(4,))
    )
    assert answered_result(link) == 2001
    assert [key for key, _ in terminated] == ["rtsp-1"]
    header, message, _ = link.requests[-1]
    assert header.command_code == Command.SESSION_TERMINATION
    assert codec.value_of(message.avps, 295) == TerminationCause.ADMINISTRATIVE


def test_informational_rar_is_only_answered() -> None:
    """A RAR reporting recovery of bearer is answered and changes nothing."""
    hook, link, terminated, session_id = admitted()
    hook.request_received(
        "spdf1", *spdf_request(258, session_id, specific_actions=(3,))
    )
    assert answered_result(link) == 2001
    assert not terminated
    assert len(link.requests) == 1


def test_asr_terminates_and_sends_str() -> None:
    """An ASR is answered 2001 and ends the RTSP session with an STR."""
    hook, link, terminated, session_id = admitted()
    hook.request_received("spdf1", *spdf_request(274, session_id, abort_cause=1))
    assert answered_result(link) == 2001
    assert terminated
    assert link.requests[-1][0].command_code == Command.SESSION_TERMINATION


def test_rar_for_unknown_session_gets_5002() -> None:
    """A RAR naming no live session is answered DIAMETER_UNKNOWN_SESSION_ID."""
    hook, link, _, _ = admitted()
    hook.request_received(
        "spdf1", *spdf_request(258, "nope;1;1", specific_actions=(4,))
    )
    assert answered_result(link) == 5002


@pytest.mark.parametrize(
    ("cause", "expected"),
    [
        ("teardown", TerminationCause.LOGOUT),
        ("timeout", TerminationCause.SESSION_TIMEOUT),
        ("box connection closed", TerminationCause.LINK_BROKEN),
        ("shutdown", TerminationCause.ADMINISTRATIVE),
    ],
)
def test_termination_cause_from_proxy_text(
    cause: str, expected: TerminationCause
) -> None:
    """The proxy's end-of-session text picks the STR Termination-Cause."""
    assert termination_cause(cause) == expected


def test_stop_waits_for_str_then_disconnects() -> None:
    """stop() lets a pending STR finish before DPR."""
    hook, link = admission()
    hook.admit(stream())
    link.respond(Result(0, 2001))
    hook.session_ended("rtsp-1", "shutdown")
    stopping = hook.stop()
    assert not link.stopped
    header, _, waiting = link.requests[-1]
    data = messages.answer(header, SPDF, session_id="x")
    waiting.callback((codec.parse_header(data), codec.decode(data)))
    assert link.stopped
    assert stopping.called
