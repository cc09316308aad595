"""Diameter peer connections as sans-IO state machines.

:class:`PeerMachine` is one peer over one transport connection at a time,
as initiator (the AF) or responder (the SPDF simulator).  It never touches a
socket or a clock: callers pass ``now`` (seconds, any monotonic origin) to
every input, send what :meth:`PeerMachine.data_to_send` returns, act on the
events of :meth:`PeerMachine.next_event` (``ConnectRequested``,
``DisconnectRequested``, ...) and call :meth:`PeerMachine.handle_timer` at
:meth:`PeerMachine.get_timer`.

:class:`~hostednat.diameter.group.PeerGroup` puts several of them in
priority order with pending requests and failover.

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
import random
from collections import deque
from collections.abc import Sequence
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
