"""The sans-IO peer machine and peer group, driven by explicit times."""

from __future__ import annotations

import random

import pytest

from hostednat.diameter import codec, messages
from hostednat.diameter.dictionary import Command
from hostednat.diameter.group import PeerGroup
from hostednat.diameter.peer import (
    AnswerReceived,
    ConnectRequested,
    DisconnectRequested,
    PeerOpened,
    PeerState,
    PeerSuspected,
    PeerWentDown,
    RequestAnswered,
    RequestFailed,
    RequestReceived,
    Role,
)
from hostednat.diameter.results import (
    NoPeerAvailable,
    PeerFailed,
    RequestTimedOut,
)

from .helpers import AF, SPDF, drain, frames, link, machine, open_pair


def str_bytes() -> bytes:
    return messages.session_termination_request(AF, "af;1;1", 1, "racs.example.net")


def watchdog_answer(request: codec.Header) -> bytes:
    return messages.answer(request, SPDF)


def test_cer_cea_opens_both_sides() -> None:
    """CER/CEA with a common application opens initiator and responder."""
    af = machine()
    spdf = machine("af", Role.RESPONDER)
    af.start(0.0)
    assert drain(af) == [ConnectRequested("spdf1")]
    af.connection_made(0.0)
    spdf.connection_made(0.0)
    sent = af.data_to_send()
    assert [h.command_code for h in frames(sent)] == [Command.CAPABILITIES_EXCHANGE]
    spdf.receive_data(sent, 0.0)
    af.receive_data(spdf.data_to_send(), 0.0)
    assert drain(af) == [PeerOpened("spdf1")]
    assert drain(spdf) == [PeerOpened("af")]
    assert af.state is PeerState.OKAY
    assert af.remote_host == SPDF.origin_host


def test_cer_carries_vendors_and_application() -> None:
    """The CER names both vendors and {10415, 16777222} (RFC 6733 5.3.1)."""
    af = machine()
    af.start(0.0)
    af.connection_made(0.0)
    message = codec.decode(af.data_to_send())
    text = "\n".join(codec.describe(message.avps))
    assert "Supported-Vendor-Id (265, M) = 10415" in text
    assert "Supported-Vendor-Id (265, M) = 13019" in text
    assert "Host-IP-Address (257, M) = 192.0.2.10" in text
    assert messages.supports_application(message.avps, 16777222)


def test_cea_without_common_application_closes_and_backs_off() -> None:
    """A CEA 5010 closes the connection and waits the longest backoff."""
    af = machine()
    af.start(0.0)
    af.connection_made(0.0)
    cer = frames(af.data_to_send())[0]
    cea = messages.capabilities_exchange_answer(cer, SPDF, ("192.0.2.20",), 5010)
    af.receive_data(cea, 1.0)
    events = drain(af)
    assert DisconnectRequested("spdf1") in events
    assert af.state is PeerState.CLOSED
    assert af.get_timer() == pytest.approx(1.0 + af.timers.reconnect_max)


def test_watchdog_dwr_suspect_down_timing() -> None:
    """Silence gives DWR at Tw, SUSPECT one Tw later, DOWN one more Tw later."""
    af, _ = open_pair()
    first = af.get_timer()
    assert first is not None and 28.0 <= first <= 32.0
    af.handle_timer(first)
    assert [h.command_code for h in frames(af.data_to_send())] == [
        Command.DEVICE_WATCHDOG
    ]
    second = af.get_timer()
    assert second is not None and 28.0 <= second - first <= 32.0
    af.handle_timer(second)
    assert drain(af) == [PeerSuspected("spdf1")]
    assert af.state is PeerState.SUSPECT
    third = af.get_timer()
    assert third is not None
    af.handle_timer(third)
    events = drain(af)
    assert events[0] == DisconnectRequested("spdf1")
    assert isinstance(events[1], PeerWentDown)
    assert af.state is PeerState.CLOSED


def test_timer_before_deadline_does_nothing() -> None:
    """handle_timer ahead of get_timer changes nothing."""
    af, _ = open_pair()
    deadline = af.get_timer()
    assert deadline is not None
    af.handle_timer(deadline - 0.001)
    assert af.data_to_send() == b""
    assert af.get_timer() == deadline


def test_traffic_resets_the_watchdog() -> None:
    """Any message received in OKAY pushes the DWR back by Tw."""
    af, spdf = open_pair()
    spdf.send_answer(b"")
    af.receive_data(messages.device_watchdog_request(SPDF), 20.0)
    timer = af.get_timer()
    assert timer is not None and timer >= 48.0


def test_dwa_in_suspect_returns_to_okay() -> None:
    """A DWA while SUSPECT brings the peer back to OKAY."""
    af, spdf = open_pair()
    af.handle_timer(af.get_timer() or 0.0)
    dwr = af.data_to_send()
    af.handle_timer(af.get_timer() or 0.0)
    assert af.state is PeerState.SUSPECT
    spdf.receive_data(dwr, 65.0)
    af.receive_data(spdf.data_to_send(), 65.0)
    assert af.state is PeerState.OKAY
    assert PeerOpened("spdf1") in drain(af)


def test_dwr_is_answered_in_every_state() -> None:
    """A DWR is answered with DWA even before the CEA arrived."""
    af = machine()
    af.start(0.0)
    af.connection_made(0.0)
    af.data_to_send()
    dwr = codec.with_identifiers(messages.device_watchdog_request(SPDF), 7, 9)
    af.receive_data(dwr, 0.5)
    answers = frames(af.data_to_send())
    assert [(h.command_code, h.is_request) for h in answers] == [
        (Command.DEVICE_WATCHDOG, False)
    ]
    assert answers[0].hop_by_hop_id == 7
    assert answers[0].end_to_end_id == 9


def reconnect(af: object, spdf: object, now: float) -> None:
    """Complete a reconnection and CER/CEA between the two machines."""
    assert af.get_timer() is not None  # type: ignore[attr-defined]
    af.handle_timer(now)  # type: ignore[attr-defined]
    assert ConnectRequested("spdf1") in drain(af)
    af.connection_made(now)  # type: ignore[attr-defined]
    spdf.connection_made(now)  # type: ignore[attr-defined]
    spdf.receive_data(af.data_to_send(), now)  # type: ignore[attr-defined]
    af.receive_data(spdf.data_to_send(), now)  # type: ignore[attr-defined]


def test_reopen_needs_three_dwas() -> None:
    """After a reconnection the peer carries requests only after 3 DWAs."""
    af, _ = open_pair()
    af.connection_lost(5.0)
    drain(af)
    spdf = machine("af", Role.RESPONDER, seed=3)
    reconnect(af, spdf, 6.0)
    assert af.state is PeerState.REOPEN
    assert not af.is_available
    with pytest.raises(NoPeerAvailable):
        af.send_request(str_bytes(), 1)
    for count in range(3):
        assert af.state is PeerState.REOPEN, count
        dwrs = af.data_to_send()
        assert [h.command_code for h in frames(dwrs)] == [Command.DEVICE_WATCHDOG]
        spdf.receive_data(dwrs, 6.0)
        af.receive_data(spdf.data_to_send(), 6.0)
    assert af.state is PeerState.OKAY
    assert PeerOpened("spdf1") in drain(af)


def test_reopen_without_dwa_goes_down() -> None:
    """A reopened connection that never answers its DWR is closed again."""
    af, _ = open_pair()
    af.connection_lost(5.0)
    drain(af)
    spdf = machine("af", Role.RESPONDER, seed=3)
    reconnect(af, spdf, 6.0)
    af.data_to_send()
    af.handle_timer(af.get_timer() or 0.0)
    assert af.state is PeerState.REOPEN
    af.handle_timer(af.get_timer() or 0.0)
    assert af.state is PeerState.CLOSED


def test_reconnect_backoff_doubles_up_to_cap() -> None:
    """Failed connection attempts back off 1, 2, 4 ... up to 30 seconds."""
    af = machine()
    af.start(0.0)
    now = 0.0
    delays = []
    for _ in range(7):
        drain(af)
        af.connection_failed(now)
        deadline = af.get_timer()
        assert deadline is not None
        delays.append(deadline - now)
        now = deadline
        af.handle_timer(now)
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_close_sends_dpr_and_stops_on_dpa() -> None:
    """close() sends DPR; the DPA closes the connection for good."""
    af, spdf = open_pair()
    af.close(1.0)
    dpr = af.data_to_send()
    assert [h.command_code for h in frames(dpr)] == [Command.DISCONNECT_PEER]
    spdf.receive_data(dpr, 1.0)
    assert DisconnectRequested("af") in drain(spdf)
    af.receive_data(spdf.data_to_send(), 1.0)
    assert DisconnectRequested("spdf1") in drain(af)
    assert af.state is PeerState.STOPPED
    assert af.get_timer() is None


def test_answer_with_unknown_hop_by_hop_is_discarded() -> None:
    """An answer nobody is waiting for produces no AnswerReceived."""
    af, _ = open_pair()
    request = codec.parse_header(codec.with_identifiers(str_bytes(), 12345, 1))
    af.receive_data(messages.answer(request, SPDF, session_id="af;1;1"), 1.0)
    assert not [e for e in drain(af) if isinstance(e, AnswerReceived)]


def test_garbage_closes_the_connection() -> None:
    """Bytes that are no Diameter version 1 header close the connection."""
    af, _ = open_pair()
    af.receive_data(b"GET / HTTP/1.1\r\n\r\n", 1.0)
    events = drain(af)
    assert DisconnectRequested("spdf1") in events
    assert af.state is PeerState.CLOSED


def test_requests_reach_the_responder_and_answers_come_back() -> None:
    """An STR crosses to the responder; its STA comes back as the answer."""
    af, spdf = open_pair()
    hop = af.send_request(str_bytes(), 0x1234)
    spdf.receive_data(af.data_to_send(), 1.0)
    (received,) = drain(spdf)
    assert isinstance(received, RequestReceived)
    assert received.header.hop_by_hop_id == hop
    assert received.header.end_to_end_id == 0x1234
    spdf.send_answer(messages.answer(received.header, SPDF, session_id="af;1;1"))
    af.receive_data(spdf.data_to_send(), 1.0)
    (answered,) = drain(af)
    assert isinstance(answered, AnswerReceived)
    assert messages.result_of(answered.message.avps) is not None


def group_of_two() -> tuple[PeerGroup, list[object]]:
    """A group whose two peers are both open, with their responders."""
    first = machine("spdf1", seed=1)
    second = machine("spdf2", seed=2)
    group = PeerGroup([first, second], request_timeout=3.0, rng=random.Random(4))
    group.start(0.0)
    responders = []
    for peer in (first, second):
        responder = machine("af", Role.RESPONDER, seed=5)
        group.connection_made(peer.name, 0.0)
        responder.connection_made(0.0)
        link(peer, responder, 0.0)
        group.receive_data(peer.name, b"", 0.0)
        responders.append(responder)
    drain(group)
    return group, responders


def test_group_prefers_the_first_peer() -> None:
    """Requests go to the highest-priority open peer."""
    group, _ = group_of_two()
    group.send_request(str_bytes(), 1.0)
    sent = dict(group.data_to_send())
    assert list(sent) == ["spdf1"]


def test_end_to_end_id_carries_the_time() -> None:
    """End-to-End ids start with the low 12 bits of the time (RFC 6733 3)."""
    group, _ = group_of_two()
    key = group.send_request(str_bytes(), float(0x12345))
    assert key >> 20 == 0x345
    assert group.send_request(str_bytes(), float(0x12345)) == key + 1


def test_suspect_peer_fails_over_with_t_flag() -> None:
    """Pending requests move to the next peer with the T flag and same E2E id."""
    group, responders = group_of_two()
    first = group.peer("spdf1")
    key = group.send_request(str_bytes(), 1.0, timeout=200.0)
    group.data_to_send()
    # Let spdf1 fall silent: its DWR stays unanswered until SUSPECT.
    second = group.peer("spdf2")
    while first.state is PeerState.OKAY:
        now = first.get_timer() or 0.0
        link(second, responders[1], now)
        group.handle_timer(now)
    events = drain(group)
    assert PeerSuspected("spdf1") in events
    resent = dict(group.data_to_send())["spdf2"]
    retried = [h for h in frames(resent) if h.command_code == 275]
    assert len(retried) == 1
    assert retried[0].is_retransmit
    assert retried[0].end_to_end_id == key
    responders[1].receive_data(resent, now)
    request = next(e for e in drain(responders[1]) if isinstance(e, RequestReceived))
    responders[1].send_answer(
        messages.answer(request.header, SPDF, session_id="af;1;1")
    )
    group.receive_data("spdf2", responders[1].data_to_send(), now)
    answered = [e for e in drain(group) if isinstance(e, RequestAnswered)]
    assert [a.key for a in answered] == [key]
    assert group.pending_count == 0


def test_peer_down_without_alternate_fails_pending() -> None:
    """With no other peer open, a lost connection fails its requests (503)."""
    af, _ = open_pair()
    group = PeerGroup([af], rng=random.Random(1))
    key = group.send_request(str_bytes(), 1.0)
    group.connection_lost("spdf1", 2.0)
    failed = [e for e in drain(group) if isinstance(e, RequestFailed)]
    assert [(f.key, type(f.failure)) for f in failed] == [(key, PeerFailed)]
    assert failed[0].failure.rtsp_status == 503


def test_request_timeout_fails_with_504() -> None:
    """A request without answer fails when its timer Tx expires."""
    af, _ = open_pair()
    group = PeerGroup([af], request_timeout=3.0, rng=random.Random(1))
    key = group.send_request(str_bytes(), 10.0)
    assert group.get_timer() == pytest.approx(13.0)
    group.handle_timer(12.9)
    assert not [e for e in drain(group) if isinstance(e, RequestFailed)]
    group.handle_timer(13.0)
    (failed,) = [e for e in drain(group) if isinstance(e, RequestFailed)]
    assert failed.key == key
    assert isinstance(failed.failure, RequestTimedOut)
    assert failed.failure.rtsp_status == 504


def test_late_answer_after_timeout_is_dropped() -> None:
    """The answer to a timed-out request does not resurface."""
    af, spdf = open_pair()
    group = PeerGroup([af], request_timeout=3.0, rng=random.Random(1))
    group.send_request(str_bytes(), 10.0)
    spdf.receive_data(dict(group.data_to_send())["spdf1"], 10.0)
    (request,) = [e for e in drain(spdf) if isinstance(e, RequestReceived)]
    group.handle_timer(13.0)
    drain(group)
    spdf.send_answer(messages.answer(request.header, SPDF, session_id="af;1;1"))
    group.receive_data("spdf1", spdf.data_to_send(), 14.0)
    assert not [e for e in drain(group) if isinstance(e, RequestAnswered)]


def test_no_open_peer_raises() -> None:
    """send_request refuses at once when no peer is OKAY."""
    group = PeerGroup([machine()], rng=random.Random(1))
    group.start(0.0)
    with pytest.raises(NoPeerAvailable) as caught:
        group.send_request(str_bytes(), 0.0)
    assert caught.value.rtsp_status == 503
