"""Diameter peer connections as sans-IO state machines.

:class:`PeerMachine` is one peer over one transport connection at a time,
as initiator (the AF) or responder (the SPDF simulator).  It never touches a
socket or a clock: callers pass ``now`` (seconds, any monotonic origin) to
every input, send what :meth:`PeerMachine.data_to_send` returns, act on the
events of :meth:`PeerMachine.next_event` (``ConnectRequested``,
``DisconnectRequested``, ...) and call :meth:`PeerMachine.handle_timer` at
:meth:`PeerMachine.get_timer`.

:class:`PeerGroup` holds the SPDF peers in priority order, sends each
request to the first open one, keeps it pending under its End-to-End
identifier until its answer or its timer Tx, and fails pending requests over
to the next open peer with the T flag when their peer turns SUSPECT or DOWN.

Implemented:

- RFC 6733 5.3 capabilities exchange (CER/CEA), 5.4 DPR/DPA, 5.6 the
  initiator path Closed -> Wait-Conn-Ack -> Wait-I-CEA -> I-Open and the
  responder path (Wait-CER -> R-Open); reconnection with exponential backoff
  (Tc, 5.6: 30 s recommended; here a backoff from 1 s capped at 30 s);
- RFC 3539 3.4.1 watchdog: Tw = 30 s +/- 2 s re-drawn at each arming, DWR on
  silence, SUSPECT one Tw later, DOWN one more Tw later, REOPEN after a
  reconnection until three DWAs came back.  Deviation: in REOPEN the next DWR
  leaves as soon as a DWA arrives (as freeDiameter does) instead of one Tw
  later, so a returning SPDF is usable within a round trip or three;
- RFC 6733 3 identifiers: Hop-by-Hop ids from a random start per
  connection, End-to-End ids seeded with the low 12 bits of the time;
  answers with an unknown Hop-by-Hop id are discarded;
- DWR always answered, in every state.

Not supported: election (RFC 6733 5.6.4; the AF only initiates and the
simulator only responds), SCTP, TLS, and relaying.
"""

from __future__ import annotations

import enum
import heapq
import random
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, Final

import attrs

from hostednat.diameter import codec, messages
from hostednat.diameter.codec import FramingError, Header
from hostednat.diameter.dictionary import Command, DisconnectCause
from hostednat.diameter.messages import Identity
from hostednat.diameter.results import (
    DIAMETER_NO_COMMON_APPLICATION,
    DIAMETER_SUCCESS,
    DIAMETER_UNABLE_TO_COMPLY,
    DiameterFailure,
    NoPeerAvailable,
    PeerFailed,
    RequestTimedOut,
    Result,
)

REOPEN_DWAS: Final = 3
"""RFC 3539 3.4.1: answers needed before a reopened connection carries
traffic again."""


LOCAL_SHUTDOWN: Final = "local shutdown"
"""The :class:`PeerWentDown` reason when we asked to leave."""


class PeerState(enum.Enum):
    """Where one peer connection stands."""

    CLOSED = "closed"
    CONNECTING = "connecting"
    WAIT_CEA = "wait-cea"
    WAIT_CER = "wait-cer"
    REOPEN = "reopen"
    OKAY = "okay"
    SUSPECT = "suspect"
    CLOSING = "closing"
    STOPPED = "stopped"


_CONNECTED: Final = frozenset(
    {
        PeerState.WAIT_CEA,
        PeerState.WAIT_CER,
        PeerState.REOPEN,
        PeerState.OKAY,
        PeerState.SUSPECT,
        PeerState.CLOSING,
    }
)
_OPEN: Final = frozenset({PeerState.REOPEN, PeerState.OKAY, PeerState.SUSPECT})


class Role(enum.Enum):
    """Which side opened the connection."""

    INITIATOR = "initiator"
    RESPONDER = "responder"


@attrs.frozen
class PeerTimers:
    """Timer values, in seconds.

    :param watchdog: Tw (RFC 3539 3.4.1: 30 s default, at least 6 s).
    :param watchdog_jitter: Tw is drawn in ``watchdog +/- watchdog_jitter``.
    :param capabilities: wait for CEA (or CER) before giving up.
    :param disconnect: wait for DPA before closing anyway.
    :param reconnect_min: first reconnection delay, doubled at each failure.
    :param reconnect_max: cap of that delay (Tc, RFC 6733 2.1: 30 s).
    """

    watchdog: float = 30.0
    watchdog_jitter: float = 2.0
    capabilities: float = 10.0
    disconnect: float = 5.0
    reconnect_min: float = 1.0
    reconnect_max: float = 30.0


# -- events ----------------------------------------------------------------


@attrs.frozen
class ConnectRequested:
    """Open a transport connection to ``peer`` and call ``connection_made``."""

    peer: str


@attrs.frozen
class DisconnectRequested:
    """Close ``peer``'s transport connection after sending pending data."""

    peer: str


@attrs.frozen
class PeerOpened:
    """``peer`` carries requests (entered OKAY)."""

    peer: str


@attrs.frozen
class PeerSuspected:
    """``peer`` missed a watchdog answer: no new requests go to it."""

    peer: str


@attrs.frozen
class PeerWentDown:
    """``peer``'s connection is gone or refused; ``reason`` says why."""

    peer: str
    reason: str
    orderly: bool = False


@attrs.frozen
class RequestReceived:
    """An application request (RAR, ASR; AAR, STR at the SPDF) arrived."""

    peer: str
    header: Header
    message: Any


@attrs.frozen
class AnswerReceived:
    """An answer to a request sent on ``peer`` (machine level)."""

    peer: str
    header: Header
    message: Any


@attrs.frozen
class ProtocolViolation:
    """The peer sent something unusable; logged, and dropped."""

    peer: str
    reason: str


@attrs.frozen
class RequestAnswered:
    """The answer to the group request ``key`` (its End-to-End id)."""

    key: int
    peer: str
    header: Header
    message: Any


@attrs.frozen
class RequestFailed:
    """The group request ``key`` ended without an answer."""

    key: int
    failure: DiameterFailure


PeerEvent = (
    ConnectRequested
    | DisconnectRequested
    | PeerOpened
    | PeerSuspected
    | PeerWentDown
    | RequestReceived
    | AnswerReceived
    | ProtocolViolation
)
GroupEvent = PeerEvent | RequestAnswered | RequestFailed


class PeerMachine:
    """One Diameter peer, driven by the caller's transport and clock."""

    def __init__(
        self,
        name: str,
        identity: Identity,
        role: Role = Role.INITIATOR,
        timers: PeerTimers | None = None,
        rng: random.Random | None = None,
        host_addresses: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.identity = identity
        self.role = role
        self.timers = timers or PeerTimers()
        self.state = PeerState.CLOSED
        self.remote_host: str | None = None
        self._rng = rng or random.Random()
        self._host_addresses = tuple(host_addresses)
        self._framer = codec.Framer()
        self._out: list[bytes] = []
        self._events: deque[PeerEvent] = deque()
        self._deadline: float | None = None
        self._dwr_pending = False
        self._dwa_count = 0
        self._opened_before = False
        self._backoff = self.timers.reconnect_min
        self._hop_by_hop = self._rng.getrandbits(32)
        self._outstanding: set[int] = set()
        self._internal: set[int] = set()

    # -- inputs from the transport ------------------------------------------

    def start(self, now: float) -> None:
        """Begin connecting (initiator only)."""
        if self.state is PeerState.CLOSED:
            self._connect()

    def connection_made(self, now: float, local_addresses: Sequence[str] = ()) -> None:
        """The transport connection is up; exchange capabilities."""
        if self.state is PeerState.STOPPED:
            self._events.append(DisconnectRequested(self.name))
            return
        if local_addresses and not self._host_addresses:
            self._host_addresses = tuple(local_addresses)
        self._framer = codec.Framer()
        self._deadline = now + self.timers.capabilities
        if self.role is Role.RESPONDER:
            self.state = PeerState.WAIT_CER
            return
        self.state = PeerState.WAIT_CEA
        request = messages.capabilities_exchange_request(
            self.identity, self._host_addresses
        )
        self._send_internal(request)

    def connection_failed(self, now: float, reason: str = "connect failed") -> None:
        """The connection attempt failed."""
        if self.state is PeerState.CONNECTING:
            self._went_down(now, reason, close=False)

    def connection_lost(self, now: float, reason: str = "connection lost") -> None:
        """The transport connection closed, by either side."""
        if self.state in _CONNECTED or self.state is PeerState.CONNECTING:
            self._went_down(now, reason, close=False)

    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes arrived on the connection."""
        try:
            frames = self._framer.feed(data)
        except FramingError as error:
            self._events.append(ProtocolViolation(self.name, str(error)))
            self._went_down(now, f"framing: {error}", close=True)
            return
        for frame in frames:
            if self.state not in _CONNECTED:
                break
            self.receive_message(frame, now)

    def receive_message(self, data: bytes, now: float) -> None:
        """One complete message arrived."""
        header = codec.parse_header(data)
        self._heard_from(now, header)
        if header.is_request:
            self._receive_request(header, data, now)
        else:
            self._receive_answer(header, data, now)

    # -- inputs from the application ----------------------------------------

    @property
    def is_available(self) -> bool:
        """Whether new requests may go to this peer (RFC 3539 OKAY)."""
        return self.state is PeerState.OKAY

    def send_request(
        self, data: bytes, end_to_end_id: int, retransmit: bool = False
    ) -> int:
        """Queue an encoded request; return the Hop-by-Hop id it got.

        :raises NoPeerAvailable: the peer is not OKAY.
        """
        if not self.is_available:
            raise NoPeerAvailable(f"peer {self.name} is {self.state.value}")
        hop_by_hop = self._next_hop_by_hop()
        self._outstanding.add(hop_by_hop)
        self._out.append(
            codec.with_identifiers(data, hop_by_hop, end_to_end_id, retransmit)
        )
        return hop_by_hop

    def send_answer(self, data: bytes) -> None:
        """Queue an encoded answer, if the connection is still there."""
        if self.state in _CONNECTED:
            self._out.append(data)

    def forget(self, hop_by_hop_id: int) -> None:
        """Stop waiting for the answer to ``hop_by_hop_id``; drop it if late."""
        self._outstanding.discard(hop_by_hop_id)

    def close(self, now: float, cause: int = DisconnectCause.REBOOTING) -> None:
        """Leave for good: DPR when open (RFC 6733 5.4), else just close."""
        if self.state in _OPEN:
            self.state = PeerState.CLOSING
            self._deadline = now + self.timers.disconnect
            self._send_internal(messages.disconnect_peer_request(self.identity, cause))
            self._events.append(PeerWentDown(self.name, LOCAL_SHUTDOWN, True))
            return
        if self.state in _CONNECTED or self.state is PeerState.CONNECTING:
            self._events.append(DisconnectRequested(self.name))
        self.state = PeerState.STOPPED
        self._deadline = None

    # -- outputs ------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Everything queued for the wire since the last call."""
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def next_event(self) -> PeerEvent | None:
        """The oldest pending event, or ``None``."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must run next, or ``None``."""
        return self._deadline

    def handle_timer(self, now: float) -> None:
        """Run the timer that is due at ``now``, if any."""
        if self._deadline is None or now < self._deadline:
            return
        state = self.state
        if state is PeerState.CLOSED:
            self._connect()
        elif state in (PeerState.WAIT_CEA, PeerState.WAIT_CER):
            self._went_down(now, "no capabilities exchange", close=True)
        elif state is PeerState.CLOSING:
            self._events.append(DisconnectRequested(self.name))
            self.state = PeerState.STOPPED
            self._deadline = None
        elif state in _OPEN:
            self._watchdog_expired(now)
        else:
            self._deadline = None

    # -- watchdog (RFC 3539 3.4.1) ------------------------------------------

    def _arm_watchdog(self, now: float) -> None:
        jitter = self.timers.watchdog_jitter
        self._deadline = now + self.timers.watchdog + self._rng.uniform(-jitter, jitter)

    def _send_watchdog(self, now: float) -> None:
        self._dwr_pending = True
        self._send_internal(messages.device_watchdog_request(self.identity))
        self._arm_watchdog(now)

    def _watchdog_expired(self, now: float) -> None:
        if not self._dwr_pending:
            self._send_watchdog(now)
        elif self.state is PeerState.OKAY:
            self.state = PeerState.SUSPECT
            self._events.append(PeerSuspected(self.name))
            self._arm_watchdog(now)
        elif self.state is PeerState.REOPEN and self._dwa_count >= 0:
            # RFC 3539 3.4.1: one more Tw of grace, and the count restarts.
            self._dwa_count = -1
            self._arm_watchdog(now)
        else:
            self._went_down(now, "watchdog: no answer", close=True)

    def _heard_from(self, now: float, header: Header) -> None:
        is_dwa = (
            header.command_code == Command.DEVICE_WATCHDOG and not header.is_request
        )
        if self.state is PeerState.OKAY:
            self._arm_watchdog(now)
        elif self.state is PeerState.SUSPECT and not is_dwa:
            # RFC 3539: any traffic proves the peer alive again.
            self._become_okay(now)

    def _become_okay(self, now: float) -> None:
        self.state = PeerState.OKAY
        self._opened_before = True
        self._backoff = self.timers.reconnect_min
        self._arm_watchdog(now)
        self._events.append(PeerOpened(self.name))

    def _receive_watchdog_answer(self, now: float) -> None:
        self._dwr_pending = False
        if self.state is PeerState.REOPEN:
            self._dwa_count += 1
            if self._dwa_count >= REOPEN_DWAS:
                self._become_okay(now)
            else:
                self._send_watchdog(now)
        elif self.state is PeerState.SUSPECT:
            self._become_okay(now)
        elif self.state is PeerState.OKAY:
            self._arm_watchdog(now)

    # -- receiving ------------------------------------------------------------

    def _receive_request(self, header: Header, data: bytes, now: float) -> None:
        code = header.command_code
        if code == Command.DEVICE_WATCHDOG:
            self._out.append(messages.answer(header, self.identity))
            return
        message = self._decode(data)
        if message is None:
            return
        if code == Command.CAPABILITIES_EXCHANGE:
            self._receive_capabilities_request(header, message, now)
        elif code == Command.DISCONNECT_PEER:
            self._out.append(messages.answer(header, self.identity))
            cause = codec.value_of(message.avps, 273)
            self._went_down(now, f"peer sent DPR ({cause})", close=True, orderly=True)
            if cause == DisconnectCause.DO_NOT_WANT_TO_TALK_TO_YOU:
                self._backoff = self.timers.reconnect_max
                self._rearm_reconnect(now)
        elif self.state in _OPEN:
            self._events.append(RequestReceived(self.name, header, message))
        else:
            self._events.append(
                ProtocolViolation(self.name, f"request {code} before open")
            )

    def _receive_capabilities_request(
        self, header: Header, message: Any, now: float
    ) -> None:
        if self.state is not PeerState.WAIT_CER:
            self._out.append(
                messages.capabilities_exchange_answer(
                    header,
                    self.identity,
                    self._host_addresses,
                    DIAMETER_UNABLE_TO_COMPLY,
                )
            )
            return
        self.remote_host = messages.origin_host(message.avps)
        if not messages.supports_application(
            message.avps, self.identity.application_id
        ):
            self._out.append(
                messages.capabilities_exchange_answer(
                    header,
                    self.identity,
                    self._host_addresses,
                    DIAMETER_NO_COMMON_APPLICATION,
                )
            )
            self._went_down(now, "no common application", close=True)
            return
        self._out.append(
            messages.capabilities_exchange_answer(
                header, self.identity, self._host_addresses
            )
        )
        self._become_okay(now)

    def _receive_answer(self, header: Header, data: bytes, now: float) -> None:
        hop_by_hop = header.hop_by_hop_id
        if hop_by_hop in self._internal:
            self._internal.discard(hop_by_hop)
            self._receive_internal_answer(header, data, now)
            return
        if hop_by_hop not in self._outstanding:
            # RFC 6733 6.2.1: an answer nobody waits for is discarded.
            self._events.append(
                ProtocolViolation(self.name, f"unknown hop-by-hop {hop_by_hop}")
            )
            return
        self._outstanding.discard(hop_by_hop)
        message = self._decode(data)
        if message is not None:
            self._events.append(AnswerReceived(self.name, header, message))

    def _receive_internal_answer(self, header: Header, data: bytes, now: float) -> None:
        code = header.command_code
        if code == Command.DEVICE_WATCHDOG:
            self._receive_watchdog_answer(now)
        elif code == Command.CAPABILITIES_EXCHANGE:
            self._receive_capabilities_answer(data, now)
        elif code == Command.DISCONNECT_PEER and self.state is PeerState.CLOSING:
            self._events.append(DisconnectRequested(self.name))
            self.state = PeerState.STOPPED
            self._deadline = None

    def _receive_capabilities_answer(self, data: bytes, now: float) -> None:
        if self.state is not PeerState.WAIT_CEA:
            return
        message = self._decode(data)
        if message is None:
            self._went_down(now, "undecodable CEA", close=True)
            return
        result = messages.result_of(message.avps) or Result(0, 0)
        if result.code != DIAMETER_SUCCESS:
            self._backoff = self.timers.reconnect_max
            self._went_down(now, f"CEA {result}", close=True)
            return
        if not messages.supports_application(
            message.avps, self.identity.application_id
        ):
            self._backoff = self.timers.reconnect_max
            self._went_down(now, "CEA without our application", close=True)
            return
        self.remote_host = messages.origin_host(message.avps)
        if not self._opened_before:
            self._become_okay(now)
            return
        self.state = PeerState.REOPEN
        self._dwa_count = 0
        self._send_watchdog(now)

    def _decode(self, data: bytes) -> Any | None:
        try:
            return codec.decode(data)
        except ValueError as error:
            self._events.append(ProtocolViolation(self.name, str(error)))
            return None

    # -- helpers ----------------------------------------------------------------

    def _connect(self) -> None:
        self.state = PeerState.CONNECTING
        self._deadline = None
        self._events.append(ConnectRequested(self.name))

    def _went_down(
        self, now: float, reason: str, close: bool, orderly: bool = False
    ) -> None:
        previous = self.state
        if close and previous in _CONNECTED:
            self._events.append(DisconnectRequested(self.name))
        self._outstanding.clear()
        self._internal.clear()
        self._dwr_pending = False
        if previous not in (PeerState.CLOSING, PeerState.STOPPED, PeerState.CLOSED):
            self._events.append(PeerWentDown(self.name, reason, orderly))
        if self.role is Role.RESPONDER or previous in (
            PeerState.CLOSING,
            PeerState.STOPPED,
        ):
            self.state = PeerState.STOPPED
            self._deadline = None
            return
        self.state = PeerState.CLOSED
        self._rearm_reconnect(now)
        self._backoff = min(self._backoff * 2, self.timers.reconnect_max)

    def _rearm_reconnect(self, now: float) -> None:
        self._deadline = now + self._backoff

    def _send_internal(self, data: bytes) -> None:
        hop_by_hop = self._next_hop_by_hop()
        self._internal.add(hop_by_hop)
        end_to_end = self._rng.getrandbits(32)
        self._out.append(codec.with_identifiers(data, hop_by_hop, end_to_end))

    def _next_hop_by_hop(self) -> int:
        self._hop_by_hop = (self._hop_by_hop + 1) & 0xFFFFFFFF
        return self._hop_by_hop


@attrs.define
class _Pending:
    key: int
    data: bytes
    peer: str
    hop_by_hop_id: int
    deadline: float
    failed_over: bool = False


class PeerGroup:
    """SPDF peers in priority order, with pending requests and failover."""

    def __init__(
        self,
        peers: Iterable[PeerMachine],
        request_timeout: float = 3.0,
        rng: random.Random | None = None,
    ) -> None:
        self.peers = list(peers)
        self._by_name = {p.name: p for p in self.peers}
        self.request_timeout = request_timeout
        self._rng = rng or random.Random()
        self._end_to_end: int | None = None
        self._pending: dict[int, _Pending] = {}
        self._by_hop: dict[tuple[str, int], int] = {}
        self._deadlines: list[tuple[float, int]] = []
        self._events: deque[GroupEvent] = deque()

    def peer(self, name: str) -> PeerMachine:
        """The machine called ``name``."""
        return self._by_name[name]

    @property
    def available(self) -> bool:
        """Whether some peer would take a request now."""
        return any(p.is_available for p in self.peers)

    @property
    def pending_count(self) -> int:
        """Requests still waiting for an answer."""
        return len(self._pending)

    def start(self, now: float) -> None:
        """Connect to every peer."""
        for peer in self.peers:
            peer.start(now)
        self._collect()

    def close(self, now: float) -> None:
        """DPR every open peer, fail what is pending."""
        for peer in self.peers:
            peer.close(now)
        for key in list(self._pending):
            self._fail(key, PeerFailed("shutting down"))
        self._collect()

    def send_request(
        self, data: bytes, now: float, timeout: float | None = None
    ) -> int:
        """Send an encoded request; return its key (End-to-End id).

        :raises NoPeerAvailable: no peer is OKAY.
        """
        peer = self._choose()
        if peer is None:
            raise NoPeerAvailable()
        key = self._next_end_to_end(now)
        hop_by_hop = peer.send_request(data, key)
        deadline = now + (self.request_timeout if timeout is None else timeout)
        self._pending[key] = _Pending(key, data, peer.name, hop_by_hop, deadline)
        self._by_hop[(peer.name, hop_by_hop)] = key
        heapq.heappush(self._deadlines, (deadline, key))
        return key

    def send_answer(self, peer: str, data: bytes) -> None:
        """Answer a request that came from ``peer``."""
        self._by_name[peer].send_answer(data)

    # transport inputs, by peer name

    def connection_made(
        self, peer: str, now: float, local_addresses: Sequence[str] = ()
    ) -> None:
        """``peer``'s connection is up."""
        self._by_name[peer].connection_made(now, local_addresses)
        self._collect(now)

    def connection_failed(self, peer: str, now: float, reason: str = "") -> None:
        """Connecting to ``peer`` failed."""
        self._by_name[peer].connection_failed(now, reason or "connect failed")
        self._collect(now)

    def connection_lost(self, peer: str, now: float, reason: str = "") -> None:
        """``peer``'s connection closed."""
        self._by_name[peer].connection_lost(now, reason or "connection lost")
        self._collect(now)

    def receive_data(self, peer: str, data: bytes, now: float) -> None:
        """Bytes arrived from ``peer``."""
        self._by_name[peer].receive_data(data, now)
        self._collect(now)

    def get_timer(self) -> float | None:
        """The earliest deadline of any peer or pending request."""
        timers = [t for t in (p.get_timer() for p in self.peers) if t is not None]
        while self._deadlines and self._deadlines[0][1] not in self._pending:
            heapq.heappop(self._deadlines)
        if self._deadlines:
            timers.append(self._deadlines[0][0])
        return min(timers, default=None)

    def handle_timer(self, now: float) -> None:
        """Run the peer timers and request timers due at ``now``."""
        for peer in self.peers:
            peer.handle_timer(now)
        while self._deadlines and self._deadlines[0][0] <= now:
            _, key = heapq.heappop(self._deadlines)
            pending = self._pending.get(key)
            if pending is not None and pending.deadline <= now:
                self._fail(key, RequestTimedOut())
        self._collect(now)

    def data_to_send(self) -> list[tuple[str, bytes]]:
        """``(peer, bytes)`` for every peer with something to send."""
        found = []
        for peer in self.peers:
            data = peer.data_to_send()
            if data:
                found.append((peer.name, data))
        return found

    def next_event(self) -> GroupEvent | None:
        """The oldest pending event, or ``None``."""
        return self._events.popleft() if self._events else None

    # -- internals ------------------------------------------------------------

    def _choose(self, excluding: str | None = None) -> PeerMachine | None:
        for peer in self.peers:
            if peer.is_available and peer.name != excluding:
                return peer
        return None

    def _next_end_to_end(self, now: float) -> int:
        if self._end_to_end is None:
            # RFC 6733 3: low 12 bits of the time in the high 12 bits.
            seed = (int(now) & 0xFFF) << 20
            self._end_to_end = seed | self._rng.getrandbits(20)
        self._end_to_end = (self._end_to_end + 1) & 0xFFFFFFFF
        while self._end_to_end in self._pending:
            self._end_to_end = (self._end_to_end + 1) & 0xFFFFFFFF
        return self._end_to_end

    def _collect(self, now: float | None = None) -> None:
        for peer in self.peers:
            while (event := peer.next_event()) is not None:
                self._route(event, now)

    def _route(self, event: PeerEvent, now: float | None) -> None:
        if isinstance(event, AnswerReceived):
            key = self._by_hop.pop((event.peer, event.header.hop_by_hop_id), None)
            pending = self._pending.pop(key, None) if key is not None else None
            if pending is not None:
                self._events.append(
                    RequestAnswered(
                        pending.key, event.peer, event.header, event.message
                    )
                )
            return
        self._events.append(event)
        if isinstance(event, PeerSuspected | PeerWentDown):
            self._fail_over(event.peer, down=isinstance(event, PeerWentDown))

    def _fail_over(self, name: str, down: bool) -> None:
        for pending in [p for p in self._pending.values() if p.peer == name]:
            alternate = self._choose(excluding=name)
            if alternate is None:
                if down:
                    self._fail(pending.key, PeerFailed())
                continue
            # RFC 6733 5.5.4: same End-to-End id, new Hop-by-Hop id, T flag.
            self._by_hop.pop((name, pending.hop_by_hop_id), None)
            self._by_name[name].forget(pending.hop_by_hop_id)
            hop_by_hop = alternate.send_request(pending.data, pending.key, True)
            pending.peer = alternate.name
            pending.hop_by_hop_id = hop_by_hop
            pending.failed_over = True
            self._by_hop[(alternate.name, hop_by_hop)] = pending.key

    def _fail(self, key: int, failure: DiameterFailure) -> None:
        pending = self._pending.pop(key, None)
        if pending is None:
            return
        self._by_hop.pop((pending.peer, pending.hop_by_hop_id), None)
        self._by_name[pending.peer].forget(pending.hop_by_hop_id)
        self._events.append(RequestFailed(key, failure))
